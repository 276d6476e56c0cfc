"""Tokenizers (text to tokens) and the Vocab (tokens to integer ids and back).

The pipeline every text chapter uses::

    tokens = CharTokenizer().tokenize(text)        # "hi!" -> ["h", "i", "!"]
    vocab = Vocab.build([tokens])                  # a token <-> id table, with <pad> = 0 and <unk> = 1
    ids = vocab.encode(tokens)                     # [5, 9, 31]
    text == CharTokenizer().detokenize(vocab.decode(ids))   # True when every token is in the vocabulary
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

import torch

from companion.checks import check_integer_dtype

PAD = "<pad>"
UNK = "<unk>"
BOS = "<bos>"
EOS = "<eos>"


class CharTokenizer:
    """Split text into characters; joining them gives the text back exactly."""

    def tokenize(self, text: str) -> list[str]:
        """One token per character."""
        _check_text(text)
        return list(text)

    def detokenize(self, tokens: Sequence[str]) -> str:
        """Concatenate the characters."""
        return "".join(tokens)


class WordTokenizer:
    """Split text into words and punctuation marks ("Don't stop." -> ["don't", "stop", "."]).

    Detokenizing joins tokens with spaces and re-attaches punctuation, which restores ordinary prose but not every
    original spacing: use ``CharTokenizer`` where the text must come back byte for byte.
    """

    _TOKEN = re.compile(r"\w+(?:['’]\w+)*|[^\w\s]")
    _SPACE_BEFORE_PUNCT = re.compile(r" ([.,;:!?%)\]}])")
    _SPACE_AFTER_OPEN = re.compile(r"([(\[{]) ")

    def __init__(self, lowercase: bool = True) -> None:
        self.lowercase = lowercase

    def tokenize(self, text: str) -> list[str]:
        """Words (keeping inner apostrophes) and single punctuation marks, lowercased unless told otherwise."""
        _check_text(text)
        return self._TOKEN.findall(text.lower() if self.lowercase else text)

    def detokenize(self, tokens: Sequence[str]) -> str:
        """Join words with spaces, without a space before closing or after opening punctuation."""
        text = " ".join(tokens)
        return self._SPACE_AFTER_OPEN.sub(r"\1", self._SPACE_BEFORE_PUNCT.sub(r"\1", text))


def _check_text(text: object) -> None:
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")


class Vocab:
    """A fixed table between tokens and ids.

    Id 0 is always ``<pad>`` and id 1 ``<unk>`` (so a padding mask is ``ids != 0`` in every chapter); further special
    tokens follow, then the corpus tokens from most to least frequent (ties broken alphabetically, so the table is
    the same on every machine). Unknown tokens encode to ``<unk>``.
    """

    def __init__(self, tokens: Sequence[str]) -> None:
        if list(tokens[:2]) != [PAD, UNK]:
            raise ValueError(f"tokens must start with {PAD!r} and {UNK!r}, got {list(tokens[:2])!r}")
        if len(set(tokens)) != len(tokens):
            duplicates = sorted(token for token, count in Counter(tokens).items() if count > 1)
            raise ValueError(f"tokens must be unique, got duplicates {duplicates[:5]!r}")
        self.id_to_token: list[str] = list(tokens)
        self.token_to_id: dict[str, int] = {token: index for index, token in enumerate(self.id_to_token)}

    @classmethod
    def build(
        cls,
        token_lists: Iterable[Sequence[str]],
        min_freq: int = 1,
        max_size: int | None = None,
        specials: Sequence[str] = (),
    ) -> Vocab:
        """Count the tokens of ``token_lists`` (one list per sentence or document) and keep the frequent ones.

        ``min_freq`` drops rarer tokens, ``max_size`` caps the table (special tokens included), and ``specials``
        adds tokens such as ``BOS`` and ``EOS`` right after ``<pad>`` and ``<unk>``.
        """
        if isinstance(token_lists, str):
            raise TypeError("token_lists must be a list of token lists, got a str: tokenize the text first")
        if min_freq < 1:
            raise ValueError(f"min_freq must be at least 1, got {min_freq}")
        counts = Counter(token for tokens in token_lists for token in tokens)
        reserved = [PAD, UNK, *(token for token in specials if token not in (PAD, UNK))]
        if max_size is not None and max_size < len(reserved):
            raise ValueError(f"max_size must be at least {len(reserved)} (the special tokens), got {max_size}")
        ranked = sorted(
            (token for token, count in counts.items() if count >= min_freq and token not in reserved),
            key=lambda token: (-counts[token], token),
        )
        table = reserved + ranked
        return cls(table[:max_size] if max_size is not None else table)

    def __len__(self) -> int:
        return len(self.id_to_token)

    def __contains__(self, token: str) -> bool:
        return token in self.token_to_id

    def __repr__(self) -> str:
        preview = ", ".join(repr(token) for token in self.id_to_token[:8])
        return f"Vocab(size={len(self)}, tokens=[{preview}, ...])"

    @property
    def pad_id(self) -> int:
        """Id of ``<pad>``: always 0."""
        return 0

    @property
    def unk_id(self) -> int:
        """Id of ``<unk>``: always 1."""
        return 1

    def encode(self, tokens: Sequence[str]) -> list[int]:
        """Map tokens to ids; tokens outside the table become ``<unk>``."""
        if isinstance(tokens, str):
            raise TypeError("tokens must be a sequence of tokens, got a str: tokenize the text first")
        return [self.token_to_id.get(token, self.unk_id) for token in tokens]

    def decode(self, ids: Sequence[int] | torch.Tensor) -> list[str]:
        """Map ids back to tokens; an id outside ``[0, len(vocab))`` is an error, never a silent wrap-around."""
        if isinstance(ids, torch.Tensor):
            if ids.dim() != 1:
                raise ValueError(f"ids must be 1-dimensional (time,), got shape {tuple(ids.shape)}")
            check_integer_dtype("ids", ids)
            ids = ids.tolist()
        not_ints = [index for index in ids if not isinstance(index, int) or isinstance(index, bool)]
        if not_ints:
            raise TypeError(f"ids must hold integers, got {not_ints[:5]!r}")
        out_of_range = [index for index in ids if not 0 <= index < len(self)]
        if out_of_range:
            raise ValueError(
                f"ids contains {out_of_range[:5]} outside the vocabulary's range [0, {len(self)}); "
                "was it encoded with another Vocab?"
            )
        return [self.id_to_token[index] for index in ids]
