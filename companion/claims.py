"""Claim boxes: find every one in the book's pages, check its markup, and write the claims appendix from them.

A claim box is the MyST admonition that each page uses for a claim of the popular articles (COURSE.md section 2.1)::

    ```{admonition} Claim: "the articles' words"
    :class: claim
    **Verdict: true under conditions.** ... {glue:text}`key` ...
    ```

The appendix is generated from the pages at build time, so a page and the table cannot disagree: its rows come from
:func:`claim_boxes`, its numbers are the pages' own glued values, pasted across documents by myst-nb
(:func:`cross_document_glue`), and its links go to each box's label (:func:`claim_label`), which
``book/_ext/claim_labels.py`` gives every box in the built site. The claims that no page decides yet come from
:data:`COURSE_CLAIMS`, with the chapter that is planned to decide each.
"""

from __future__ import annotations

import collections
import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

VERDICTS = ("true under conditions", "true", "wrong")
NOT_YET_DECIDED = "not yet decided"
_FENCE = re.compile(r"^(?P<fence>`{3,}|:{3,}|~{3,})\s*(?P<info>.*?)\s*$")
_OPTION = re.compile(r"^:(?P<key>[\w-]+):\s*(?P<value>.*?)\s*$")
_TITLE = re.compile(r'^Claim: "(?P<claim>[^"]+)"$')
_VERDICT = re.compile(r"^\*\*Verdict: (?P<verdict>[^*]+?)\*\*")
_GLUE = re.compile(r"\{glue(?P<kind>:\w*)?\}`(?P<content>[^`]+)`")
_DOC = re.compile(r"\{doc\}`(?:(?P<text>[^`<]*?)\s*<(?P<linked>[^`>]+)>|(?P<bare>[^`<>]+))`")


class MalformedClaimBox(ValueError):
    """A claim box whose markup differs from the one form every page uses (title, class, verdict line)."""


@dataclass(frozen=True)
class PlannedClaim:
    """A claim of COURSE.md section 2.1: the articles' words, the chapter planned to decide it, and the phrase (lower
    case) by which the title of the box that decides it is recognised."""

    claim: str
    chapter: str
    match: str


# COURSE.md section 2.1, one entry per statement a box decides (the first bullet and the "wrong as stated" bullet
# hold several statements each).
COURSE_CLAIMS = (
    PlannedClaim("Gradients through n RNN steps shrink like a^n (0.9^100 ≈ 0.000026)", "Chapter 2", "like a^n"),
    PlannedClaim("The nested activations are the culprit", "Chapter 2", "nested activations"),
    PlannedClaim(
        "The LSTM cell path only mitigates vanishing gradients; beyond ~300 steps an LSTM still loses long memory",
        "Chapter 3",
        "lstm cell path",
    ),
    PlannedClaim("The GRU is simpler and about as good as the LSTM on most tasks", "Chapter 4", "gru is simpler"),
    PlannedClaim(
        "Seq2seq with one fixed context vector degrades on long inputs; attention fixes it",
        "Chapters 5 and 7",
        "fixed context vector",
    ),
    PlannedClaim(
        "Self-attention without positional encoding ignores word order (我喜欢你 ≠ 你喜欢我 needs positions)",
        "Chapter 9",
        "without positional encoding",
    ),
    PlannedClaim(
        "Attention costs O(n²) in sequence length but runs all positions in parallel; an RNN needs n sequential steps",
        "Chapter 8",
        "o(n²)",
    ),
    PlannedClaim(
        "Post-LN Transformers have gradient trouble when deep; pre-LN trains without warm-up", "Chapter 10", "post-ln"
    ),
    PlannedClaim(
        "A single-layer Transformer encoder can be weaker than a single-layer LSTM", "Chapter 11", "single-layer"
    ),
    PlannedClaim("The Transformer was first applied in BERT", "Chapter 10", "bert"),
    PlannedClaim("The LSTM cannot be used for transfer learning", "Chapter 11", "transfer"),
    PlannedClaim("The context vector's length is usually 256, 512 or 1024", "Chapter 5", "context vector's length"),
)


@dataclass(frozen=True)
class ClaimBox:
    """One claim box as its page states it.

    Attributes: ``page`` (the page's path without suffix, as in ``_toc.yml``: ``book/part2/lstm``), ``source`` (the
    file, ``book/part2/lstm.ipynb``), ``claim`` (the quoted words of the title), ``verdict`` (one of
    :data:`VERDICTS`), ``verdict_line`` (the bold first line's words after "Verdict:"), ``body`` (the box's
    Markdown below its options, verdict line included) and ``label`` (the box's anchor in the built site).
    """

    page: str
    source: str
    claim: str
    verdict: str
    verdict_line: str
    body: str
    label: str


def claim_label(claim: str, page: str) -> str:
    """The anchor a box gets in the built site: ``claim-``, the page's file name and the first eight ASCII words of
    its claim, lower case (``claim-lstm-the-lstm-cell-path-…``).

    Built from letters and digits only, so the Markdown source and the rendered title (where quotes turn curly and
    ``*emphasis*`` loses its stars) give the same label. The page's name keeps it unique when two pages box the same
    claim (labels are global to the site).
    """
    words = re.findall(r"[a-z0-9]+", claim.lower())
    if not words:
        raise MalformedClaimBox(f"claim {claim!r} has no ASCII word to make a label from")
    return "claim-" + "-".join([*re.findall(r"[a-z0-9]+", page.rsplit("/", 1)[-1].lower()), *words[:8]])


def toc_pages(root: Path) -> list[str]:
    """The pages ``_toc.yml`` lists under ``root``, in reading order (paths without suffix, the root page first)."""
    toc = yaml.safe_load((Path(root) / "_toc.yml").read_text(encoding="utf-8"))
    pages = [toc["root"]]

    def walk(entries: list[dict]) -> None:
        for entry in entries:
            if "file" in entry:
                pages.append(entry["file"])
            walk(entry.get("sections", []))
            walk(entry.get("chapters", []))

    walk(toc.get("parts", []))
    walk(toc.get("chapters", []))
    return pages


def page_file(root: Path, page: str) -> Path:
    """The file of a ``_toc.yml`` entry: ``page.md`` or ``page.ipynb`` under ``root``."""
    for suffix in (".md", ".ipynb"):
        path = Path(root) / f"{page}{suffix}"
        if path.is_file():
            return path
    raise FileNotFoundError(f"_toc.yml lists {page!r}, but neither {page}.md nor {page}.ipynb exists under {root}")


def markdown_blocks(path: Path) -> list[str]:
    """The Markdown of a page: the whole file for ``.md``, each Markdown cell for a notebook."""
    text = Path(path).read_text(encoding="utf-8")
    if Path(path).suffix != ".ipynb":
        return [text]
    cells = json.loads(text)["cells"]
    return ["".join(cell["source"]) for cell in cells if cell["cell_type"] == "markdown"]


def page_title(path: Path) -> str:
    """The first ``# heading`` of a page, without the hashes."""
    for block in markdown_blocks(path):
        for line in block.splitlines():
            if line.startswith("# "):
                return line[2:].strip()
    return Path(path).stem


def parse_claim_boxes(markdown: str, page: str, source: str) -> list[ClaimBox]:
    """Every claim box in one block of MyST Markdown, checked.

    A box is an admonition whose title starts with ``Claim`` or whose class is ``claim``; literal code blocks are
    skipped (a page may show the markup itself). Raises :class:`MalformedClaimBox`, naming the page, the line and
    what was expected, when a box's title is not ``Claim: "…"``, its class is not ``claim`` or its first line is not
    ``**Verdict: <one of VERDICTS>…**``.
    """
    lines = markdown.splitlines()
    boxes = []
    # Open fences: (character, length, literal?, index of a claim box's first line or None)
    stack: list[tuple[str, int, bool, int | None]] = []
    for index, line in enumerate(lines):
        match = _FENCE.match(line)
        if not match:
            continue
        fence, info = match["fence"], match["info"]
        if stack and stack[-1][2]:
            # Inside a literal block only its own closing fence counts.
            char, length, _, _ = stack[-1]
            if not info and fence[0] == char and len(fence) >= length:
                stack.pop()
            continue
        if not info and stack and fence[0] == stack[-1][0] and len(fence) >= stack[-1][1]:
            _, _, _, start = stack.pop()
            if start is not None:
                boxes.append(_claim_box(lines[start:index], page, source, start))
            continue
        is_directive = info.startswith("{")
        is_claim = info.startswith("{admonition}") and (
            info[len("{admonition}") :].strip().startswith("Claim") or _has_claim_class(lines, index)
        )
        stack.append((fence[0], len(fence), not is_directive, index if is_claim else None))
    return boxes


def _has_claim_class(lines: list[str], opening: int) -> bool:
    for line in lines[opening + 1 :]:
        option = _OPTION.match(line)
        if not option:
            return False
        if option["key"] == "class" and "claim" in option["value"].split():
            return True
    return False


def _claim_box(lines: list[str], page: str, source: str, start: int) -> ClaimBox:
    where = f"{source}, the claim box at line {start + 1} of its Markdown"
    title = lines[0].split("}", 1)[1].strip()
    claim = _TITLE.match(title)
    if not claim:
        raise MalformedClaimBox(f'{where}: title {title!r}, expected Claim: "the articles\' words" (straight quotes)')
    body_start = 1
    options = {}
    while body_start < len(lines) and (option := _OPTION.match(lines[body_start])):
        options[option["key"]] = option["value"]
        body_start += 1
    if "claim" not in options.get("class", "").split():
        raise MalformedClaimBox(f"{where}: class {options.get('class')!r}, expected :class: claim")
    body = "\n".join(lines[body_start:]).strip()
    verdict_line = _VERDICT.match(body)
    if not verdict_line:
        first = body.splitlines()[0] if body else ""
        raise MalformedClaimBox(f"{where}: first line {first[:60]!r}, expected **Verdict: …** with one of {VERDICTS}")
    words = verdict_line["verdict"].strip()
    verdict = next((name for name in VERDICTS if words.lower().startswith(name)), None)
    if verdict is None:
        raise MalformedClaimBox(f"{where}: verdict {words!r}, expected one of {VERDICTS}")
    label = options.get("name") or claim_label(claim["claim"], page)
    return ClaimBox(page, source, claim["claim"], verdict, words.rstrip("."), body, label)


def claim_boxes(root: Path) -> list[ClaimBox]:
    """Every claim box of the pages that ``_toc.yml`` lists under ``root``, in reading order, each checked
    (:func:`parse_claim_boxes`); raises :class:`MalformedClaimBox` when two boxes would share a label."""
    boxes = []
    for page in toc_pages(root):
        path = page_file(root, page)
        source = str(path.relative_to(root))
        for block in markdown_blocks(path):
            boxes.extend(parse_claim_boxes(block, page, source))
    labels = collections.Counter(box.label for box in boxes)
    if repeated := [label for label, count in labels.items() if count > 1]:
        raise MalformedClaimBox(f"claim boxes share the labels {repeated}: reword one claim or give it :name:")
    return boxes


def planned_claim_of(box: ClaimBox) -> PlannedClaim | None:
    """The COURSE.md claim that a box decides (its title holds the claim's match phrase), or None."""
    title = box.claim.lower().replace("’", "'")
    return next((planned for planned in COURSE_CLAIMS if planned.match in title), None)


def undecided_claims(boxes: list[ClaimBox]) -> list[PlannedClaim]:
    """The claims of :data:`COURSE_CLAIMS` that none of ``boxes`` decides yet."""
    decided = {planned_claim_of(box) for box in boxes}
    return [planned for planned in COURSE_CLAIMS if planned not in decided]


def verdict_counts(boxes: list[ClaimBox]) -> dict[str, int]:
    """How many boxes reach each verdict, with the undecided claims of COURSE.md under :data:`NOT_YET_DECIDED`."""
    counts = collections.Counter(box.verdict for box in boxes)
    result = {verdict: counts.get(verdict, 0) for verdict in VERDICTS}
    result[NOT_YET_DECIDED] = len(undecided_claims(boxes))
    return result


def cross_document_glue(markdown: str, source: str) -> str:
    """Rewrite a page's ``{glue:text}`key:fmt``` roles as myst-nb's cross-document form
    ``{glue:text}`/source::key:fmt```, so that another page pastes the value that page's execution glued.

    A format is always written out (``:s`` when the page gave none), because myst-nb splits ``path::key`` at its
    last colon.
    """

    def rewrite(match: re.Match) -> str:
        kind, content = match["kind"] or "", match["content"]
        if "::" in content:
            return match[0]
        if kind == ":text":
            key, _, fmt = content.partition(":")
            return f"{{glue:text}}`/{source}::{key}:{fmt or 's'}`"
        return f"{{glue{kind}}}`/{source}::{content}`"

    return _GLUE.sub(rewrite, markdown)


def absolute_doc_links(markdown: str, page: str) -> str:
    """Rewrite a page's relative ``{doc}`target``` and ``{doc}`text <target>``` roles as paths from the book's root
    (``/book/part5/gpt-bert``), so that a box quoted on another page still links to the document its page meant."""
    folder = page.rpartition("/")[0]

    def rewrite(match: re.Match) -> str:
        target = match["linked"] or match["bare"]
        if not target.startswith("/"):
            target = f"/{folder}/{target}" if folder else f"/{target}"
        text = match["text"] if match["linked"] else None
        return f"{{doc}}`{text} <{target}>`" if text else f"{{doc}}`{target}`"

    return _DOC.sub(rewrite, markdown)


def claims_table(root: Path) -> str:
    """The claims appendix's Markdown (MyST): one table row per claim box and per undecided claim of COURSE.md,
    then each box as its page states it, its glued numbers pasted from that page."""
    boxes = claim_boxes(root)
    titles = {box.page: page_title(page_file(root, box.page)) for box in boxes}
    rows = ["| | Claim | Verdict | Decided in |", "|---|---|---|---|"]
    for number, box in enumerate(boxes, 1):
        link = f"{{ref}}`{titles[box.page]} <{box.label}>`"
        rows.append(f"| {number} | {_cell(box.claim)} | {box.verdict} | {link} |")
    for number, planned in enumerate(undecided_claims(boxes), len(boxes) + 1):
        rows.append(f"| {number} | {_cell(planned.claim)} | {NOT_YET_DECIDED} | {planned.chapter} (planned) |")
    quoted = []
    for number, box in enumerate(boxes, 1):
        body = absolute_doc_links(cross_document_glue(box.body, box.source), box.page).replace("\n", "\n> ")
        quoted.append(f'**{number}. "{_cell(box.claim)}"** ({{ref}}`the box on its page <{box.label}>`)\n\n> {body}')
    return "\n".join(rows) + "\n\n" + "\n\n".join(quoted) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")
