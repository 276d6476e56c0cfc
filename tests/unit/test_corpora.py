"""companion.data.corpora: the gensim Wikipedia articles and the pydoc topics, offline and clean."""

import re

import pytest

from companion.data import WIKIPEDIA_LICENSE, load_corpus, pydoc_text, wikipedia_articles, wikipedia_text
from companion.data.corpora import CORPORA


@pytest.fixture(scope="module")
def wiki() -> str:
    return wikipedia_text()  # about 1.5-5 s once, then cached


def test_wikipedia_size_and_article_count(wiki):
    assert 3.0e6 < len(wiki) < 3.2e6
    assert len(wikipedia_articles()) == 106


def test_wikipedia_articles_have_titles_and_text():
    articles = wikipedia_articles()
    titles = [title for title, _ in articles]
    assert len(set(titles)) == len(titles)
    assert all(title.strip() and text.strip() for title, text in articles)
    assert "Anarchism" in titles


def test_wikipedia_has_no_redirects(wiki):
    assert "#redirect" not in wiki.lower()
    assert not any(text.lstrip().upper().startswith("#REDIRECT") for _, text in wikipedia_articles())


def test_wikipedia_has_no_bold_or_italic_markup(wiki):
    assert "'''" not in wiki
    assert "''" not in wiki


def test_wikipedia_is_tidy(wiki):
    assert "\n\n\n" not in wiki
    assert not re.search(r"[ \t]\n", wiki)
    assert wiki == wiki.strip()


def test_wikipedia_text_joins_the_articles_with_blank_lines(wiki):
    assert wiki == "\n\n".join(text for _, text in wikipedia_articles())
    assert wiki.startswith(wikipedia_articles()[0][1])


def test_wikipedia_is_cached():
    assert wikipedia_articles() is wikipedia_articles()


def test_wikipedia_license_is_cc_by_sa():
    assert "CC BY-SA" in WIKIPEDIA_LICENSE


def test_pydoc_size():
    text = pydoc_text()
    assert 0.4e6 < len(text) < 0.55e6  # about 0.47 M characters; the exact number depends on the Python version
    assert "\n\n\n" not in text
    assert 'The "assert" statement' in text


def test_pydoc_is_sorted_by_topic():
    from pydoc_data.topics import topics

    first = sorted(topics)[0]
    assert pydoc_text().startswith(topics[first].strip()[:40])


@pytest.mark.parametrize("loader", [wikipedia_text, pydoc_text])
@pytest.mark.parametrize("max_chars", [1, 1000])
def test_max_chars_truncates(loader, max_chars):
    text = loader(max_chars)
    assert len(text) == max_chars
    assert loader().startswith(text)


@pytest.mark.parametrize("loader", [wikipedia_text, pydoc_text])
@pytest.mark.parametrize("max_chars", [0, -5])
def test_max_chars_must_be_positive(loader, max_chars):
    with pytest.raises(ValueError, match=rf"^max_chars must be a positive int or None, got {max_chars}$"):
        loader(max_chars)


def test_max_chars_beyond_the_corpus_returns_all_of_it():
    assert pydoc_text(10**9) == pydoc_text()


def test_load_corpus_by_name(wiki):
    assert set(CORPORA) == {"wikipedia", "pydoc"}
    assert load_corpus("pydoc") == pydoc_text()
    assert load_corpus("pydoc", max_chars=50) == pydoc_text()[:50]
    assert load_corpus("wikipedia", max_chars=200) == wiki[:200]
    assert load_corpus(max_chars=10) == wiki[:10]  # wikipedia is the default


def test_load_corpus_refuses_an_unknown_name():
    with pytest.raises(ValueError, match=r"^name must be one of \('wikipedia', 'pydoc'\), got 'timemachine'$"):
        load_corpus("timemachine")
