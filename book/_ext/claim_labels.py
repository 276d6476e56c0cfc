"""Sphinx extension: give every claim box (an admonition of class ``claim``)
a label, so that the claims appendix links straight to it.

The label is ``companion.claims.claim_label`` of the box's claim, the function
that also writes the appendix's links, so no page has to name its box, and a
box that lands on a new page is linked without an edit. A box with a
``:name:`` keeps it. The transform runs before Sphinx's domains collect the
labels, so ``{ref}`` resolves the label like any other, and a link to a box
that no page holds any more fails the ``-W`` build.
"""

from __future__ import annotations

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.transforms import SphinxTransform

from companion.claims import claim_label


class LabelClaimBoxes(SphinxTransform):
    """Name each claim admonition that has no name ``claim-…``."""

    # Before SphinxDomains (850), which registers explicit targets as labels.
    default_priority = 800

    def apply(self, **kwargs) -> None:
        for box in self.document.findall(nodes.admonition):
            if "claim" not in box["classes"] or box["names"]:
                continue
            title = next(iter(box.findall(nodes.title)), None)
            if title is None:
                continue
            claim = title.astext().removeprefix("Claim:").strip()
            label = claim_label(claim, self.env.docname)
            box["names"].append(label)
            box["ids"].append(label)
            self.document.note_explicit_target(box, box)


def setup(app: Sphinx) -> dict:
    app.add_transform(LabelClaimBoxes)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
