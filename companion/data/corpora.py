"""Prose corpora that ship inside installed packages, so every language model in the course trains offline.

* ``wikipedia_text()``: about 3.1 million characters of 106 English Wikipedia articles, from the test data that
  ships with gensim, cleaned of wiki markup by gensim's own ``filter_wiki``. The text is licensed CC BY-SA
  (https://creativecommons.org/licenses/by-sa/4.0/); pages that use it must say so.
* ``pydoc_text()``: about 0.47 million characters of the Python language reference, from the standard library's
  ``pydoc_data`` (nothing to install; used by fast tests and as a fallback).
"""

from __future__ import annotations

import bz2
import re
from functools import lru_cache
from pathlib import Path

from companion.checks import check_choice

WIKIPEDIA_LICENSE = "CC BY-SA 4.0 (text of English Wikipedia articles, shipped in gensim's test data)"
_WIKIPEDIA_DUMP = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"


@lru_cache(maxsize=1)
def wikipedia_articles() -> tuple[tuple[str, str], ...]:
    """Return ``(title, plain text)`` for every article of gensim's shortened Wikipedia dump (redirects dropped)."""
    from gensim.corpora.wikicorpus import extract_pages, filter_wiki
    from gensim.test.utils import datapath

    with bz2.open(Path(datapath(_WIKIPEDIA_DUMP))) as dump:
        pages = [(title, filter_wiki(markup)) for title, markup, _ in extract_pages(dump)]
    return tuple((title, _tidy(text)) for title, text in pages if not _is_redirect(text))


def wikipedia_text(max_chars: int | None = None) -> str:
    """All Wikipedia articles as one string, articles separated by a blank line; optionally the first characters."""
    return _truncate("\n\n".join(text for _, text in wikipedia_articles()), max_chars)


@lru_cache(maxsize=1)
def _pydoc_text() -> str:
    from pydoc_data.topics import topics

    return "\n\n".join(_tidy(topics[name]) for name in sorted(topics))


def pydoc_text(max_chars: int | None = None) -> str:
    """The Python language reference's help topics (``pydoc_data.topics``), sorted by topic name."""
    return _truncate(_pydoc_text(), max_chars)


CORPORA = {"wikipedia": wikipedia_text, "pydoc": pydoc_text}


def load_corpus(name: str = "wikipedia", max_chars: int | None = None) -> str:
    """Load one of ``CORPORA`` by name: ``"wikipedia"`` (3.1 M characters) or ``"pydoc"`` (0.47 M characters)."""
    check_choice("name", name, tuple(CORPORA))
    return CORPORA[name](max_chars)


def _is_redirect(text: str) -> bool:
    return text.lstrip().upper().startswith("#REDIRECT")


_BOLD_ITALIC = re.compile(r"'{2,}")  # wiki emphasis that filter_wiki leaves in place
_BLANK_RUNS = re.compile(r"\n{3,}")
_TRAILING_SPACE = re.compile(r"[ \t]+\n")


def _tidy(text: str) -> str:
    text = _BOLD_ITALIC.sub("", text)
    text = _TRAILING_SPACE.sub("\n", text)
    return _BLANK_RUNS.sub("\n\n", text).strip()


def _truncate(text: str, max_chars: int | None) -> str:
    if max_chars is None:
        return text
    if max_chars < 1:
        raise ValueError(f"max_chars must be a positive int or None, got {max_chars!r}")
    return text[:max_chars]
