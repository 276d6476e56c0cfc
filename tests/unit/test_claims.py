"""Claim boxes: every box of the book's pages has the one form (title, class, verdict), and the claims appendix lists
every box and every claim of COURSE.md section 2.1 that no page decides yet."""

import re
from pathlib import Path

import pytest

from companion import claims

ROOT = Path(__file__).resolve().parents[2]

GOOD = """Some prose.

```{admonition} Claim: "Recurrence is all you need"
:class: claim
**Verdict: wrong.** It measured {glue:text}`gap:.2f` and {glue:text}`steps`.
```
"""


def parse(markdown: str) -> list[claims.ClaimBox]:
    return claims.parse_claim_boxes(markdown, "book/part9/x", "book/part9/x.ipynb")


def test_every_box_of_the_book_is_well_formed():
    # Raises MalformedClaimBox, naming the page and what was expected, for a box without its verdict line or with
    # a malformed title or class.
    boxes = claims.claim_boxes(ROOT)
    assert boxes, "the written chapters hold claim boxes"
    assert all(box.verdict in claims.VERDICTS for box in boxes)


def test_the_parser_misses_no_box_of_the_book():
    # Counted a second, cruder way: every admonition line that opens a claim box in a listed page.
    opening = re.compile(r"^(`{3,}|:{3,})\{admonition\}\s*Claim", re.MULTILINE)
    expected = sum(
        len(opening.findall(block))
        for page in claims.toc_pages(ROOT)
        for block in claims.markdown_blocks(claims.page_file(ROOT, page))
    )
    assert len(claims.claim_boxes(ROOT)) == expected


def test_the_table_lists_every_box_and_every_undecided_claim():
    boxes = claims.claim_boxes(ROOT)
    table = claims.claims_table(ROOT)
    rows = [line for line in table.splitlines() if re.match(r"^\| \d+ \|", line)]
    assert len(rows) == len(boxes) + len(claims.undecided_claims(boxes))
    for row, box in zip(rows, boxes, strict=False):
        assert box.claim in row
        assert box.verdict in row
        assert f"<{box.label}>" in row
    for planned in claims.undecided_claims(boxes):
        assert any(planned.claim in row and claims.NOT_YET_DECIDED in row and planned.chapter in row for row in rows)


def test_every_course_claim_is_decided_or_listed_once():
    boxes = claims.claim_boxes(ROOT)
    decided = {claims.planned_claim_of(box) for box in boxes} - {None}
    assert decided.isdisjoint(claims.undecided_claims(boxes))
    assert len(decided) + len(claims.undecided_claims(boxes)) == len(claims.COURSE_CLAIMS)


def test_a_box_is_parsed_with_its_verdict_label_and_body():
    [box] = parse(GOOD)
    assert box.claim == "Recurrence is all you need"
    assert box.verdict == "wrong"
    assert box.label == "claim-x-recurrence-is-all-you-need"
    assert box.body.startswith("**Verdict: wrong.**")
    assert box.body.endswith("{glue:text}`steps`.")


def test_the_longest_matching_verdict_wins():
    [box] = parse(GOOD.replace("wrong.", "true under conditions, and more."))
    assert box.verdict == "true under conditions"
    assert box.verdict_line == "true under conditions, and more"


@pytest.mark.parametrize(
    ("markdown", "message"),
    [
        (GOOD.replace("**Verdict: wrong.** ", ""), "expected \\*\\*Verdict"),
        (GOOD.replace("**Verdict: wrong.**", "**Verdict: mostly.**"), "verdict 'mostly."),
        (GOOD.replace('Claim: "Recurrence is all you need"', "Claim: Recurrence is all you need"), "title"),
        (GOOD.replace('Claim: "Recurrence is all you need"', "Recurrence is all you need"), "title"),
        (GOOD.replace(":class: claim", ":class: note"), "expected :class: claim"),
    ],
    ids=["no verdict", "unknown verdict", "unquoted title", "title without Claim", "wrong class"],
)
def test_a_malformed_box_is_named(markdown, message):
    with pytest.raises(claims.MalformedClaimBox, match=message) as error:
        parse(markdown)
    assert "book/part9/x.ipynb" in str(error.value)
    assert "line 3" in str(error.value)


def test_markup_shown_in_a_code_block_is_no_box_and_colon_fences_are_boxes():
    shown = "````markdown\n" + GOOD + "````\n"
    assert parse(shown) == []
    colon = GOOD.replace("```{admonition}", ":::{admonition}").replace("```\n", ":::\n")
    assert [box.claim for box in parse(colon)] == ["Recurrence is all you need"]
    nested = "```{note}\n" + GOOD + "```\n"
    assert len(parse(nested)) == 1


def test_a_name_option_sets_the_label():
    [box] = parse(GOOD.replace(":class: claim", ":class: claim\n:name: claim-mine"))
    assert box.label == "claim-mine"


def test_the_label_survives_curly_quotes_and_emphasis():
    source = claims.claim_label("the context vector's length", "book/part3/encoder-decoder")
    assert source == claims.claim_label("the *context* vector’s length", "book/part3/encoder-decoder")
    assert source == "claim-encoder-decoder-the-context-vector-s-length"
    with pytest.raises(claims.MalformedClaimBox, match="no ASCII word"):
        claims.claim_label("我喜欢你", "book/part4/position")


def test_glue_is_rewritten_to_paste_from_the_box_page():
    rewritten = claims.cross_document_glue(GOOD, "book/part9/x.ipynb")
    assert "{glue:text}`/book/part9/x.ipynb::gap:.2f`" in rewritten
    # myst-nb splits at the last colon, so a key without a format gets an explicit one.
    assert "{glue:text}`/book/part9/x.ipynb::steps:s`" in rewritten
    assert claims.cross_document_glue("{glue:}`fig`", "a.ipynb") == "{glue:}`/a.ipynb::fig`"
    assert claims.cross_document_glue(rewritten, "book/part9/x.ipynb") == rewritten


def test_counts_cover_every_verdict_and_the_undecided_claims():
    [box] = parse(GOOD)
    counts = claims.verdict_counts([box])
    assert counts["wrong"] == 1
    assert counts["true"] == 0
    assert counts[claims.NOT_YET_DECIDED] == len(claims.COURSE_CLAIMS)


def test_toc_pages_and_titles(tmp_path):
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: intro\nparts:\n  - caption: A\n    chapters:\n      - file: a\n"
        "        sections:\n          - file: b\n"
    )
    (tmp_path / "intro.md").write_text("# Intro\n")
    (tmp_path / "a.md").write_text("# Chapter A\n\n" + GOOD)
    assert claims.toc_pages(tmp_path) == ["intro", "a", "b"]
    assert claims.page_title(tmp_path / "a.md") == "Chapter A"
    with pytest.raises(FileNotFoundError, match="'b'"):
        claims.claim_boxes(tmp_path)


def test_a_quoted_box_keeps_its_relative_document_links_pointing_where_its_page_meant():
    body = "see {doc}`chapter 11 <gpt-bert>`, {doc}`gpt-bert` and {doc}`the data </book/appendix/data>`"
    assert claims.absolute_doc_links(body, "book/part5/transformer") == (
        "see {doc}`chapter 11 </book/part5/gpt-bert>`, {doc}`/book/part5/gpt-bert` and "
        "{doc}`the data </book/appendix/data>`"
    )
