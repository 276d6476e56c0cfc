"""Data for the course: tokenizers and vocabularies, offline corpora, translation pairs, time series, synthetic
memory tasks and padded batching. Everything is generated or ships inside an installed package."""

from companion.data.batching import (
    PairBatch,
    lengths_to_mask,
    next_token_pairs,
    pad_batch,
    pair_collator,
    sliding_windows,
    unpad,
)
from companion.data.corpora import WIKIPEDIA_LICENSE, load_corpus, pydoc_text, wikipedia_articles, wikipedia_text
from companion.data.synthetic import Examples, adding_problem, copy_task, recall_task, reverse_task
from companion.data.timeseries import Series, Standardizer, load_series
from companion.data.translation import TranslationSplits, date_pairs, number_list_pairs, number_pairs, split_by_value
from companion.data.vocab import BOS, EOS, PAD, UNK, CharTokenizer, Vocab, WordTokenizer

__all__ = [
    "BOS",
    "EOS",
    "PAD",
    "UNK",
    "WIKIPEDIA_LICENSE",
    "CharTokenizer",
    "Examples",
    "PairBatch",
    "Series",
    "Standardizer",
    "TranslationSplits",
    "Vocab",
    "WordTokenizer",
    "adding_problem",
    "copy_task",
    "date_pairs",
    "lengths_to_mask",
    "load_corpus",
    "load_series",
    "next_token_pairs",
    "number_list_pairs",
    "number_pairs",
    "pad_batch",
    "pair_collator",
    "pydoc_text",
    "recall_task",
    "reverse_task",
    "sliding_windows",
    "split_by_value",
    "unpad",
    "wikipedia_articles",
    "wikipedia_text",
]
