"""The glossary: every term has its Chinese equivalent and either a link to a page of the book (one listed in
_toc.yml) or the chapter planned to define it."""

import re
from pathlib import Path

from companion.claims import toc_pages

ROOT = Path(__file__).resolve().parents[2]
GLOSSARY = ROOT / "book" / "appendix" / "glossary.md"
CJK = re.compile(r"[\u4e00-\u9fff]")


def entries() -> dict[str, str]:
    """Term -> definition, from every {glossary} block (a term line, then its indented definition)."""
    found: dict[str, str] = {}
    for block in re.findall(r"```\{glossary\}\n(.*?)\n```", GLOSSARY.read_text(encoding="utf-8"), re.DOTALL):
        term = None
        for line in block.splitlines():
            if line and not line.startswith(" "):
                term = line.strip()
                found[term] = ""
            elif term is not None:
                found[term] += line.strip() + " "
    return found


def test_the_glossary_holds_the_terms_the_course_plan_names():
    terms = " ".join(entries())
    english_terms = (
        "Recurrent neural network",
        "Long short-term memory",
        "Gated recurrent unit",
        "Attention mechanism",
        "Self-attention",
        "Multi-head attention",
        "Positional encoding",
    )
    for english in english_terms:
        assert english in terms
    definitions = " ".join(entries().values())
    chinese_terms = ("循环神经网络", "长短期记忆", "门控循环单元", "注意力机制", "自注意力", "多头注意力", "位置编码")
    for chinese in chinese_terms:
        assert chinese in definitions


def test_every_term_has_chinese_and_a_page_or_a_planned_chapter():
    pages = set(toc_pages(ROOT))
    for term, definition in entries().items():
        assert CJK.search(definition), f"{term}: no Chinese term"
        links = re.findall(r"\{doc\}`([^`]+)`", definition)
        targets = {str((GLOSSARY.parent / link).resolve().relative_to(ROOT)) for link in links}
        assert targets <= pages, f"{term}: links to {targets - pages}, which _toc.yml does not list"
        assert links or re.search(r"Chapter \d+\.", definition), f"{term}: neither a link nor a planned chapter"
