"""Metrics: token accuracy, perplexity, exact match, and corpus BLEU and chrF through sacreBLEU (never hand-written)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from companion.checks import check_not_empty, check_tensor


def _check_logits_targets(logits: torch.Tensor, targets: torch.Tensor) -> None:
    check_tensor("logits", logits)
    check_tensor("targets", targets)
    if logits.dim() != targets.dim() + 1 or logits.shape[:-1] != targets.shape:
        raise ValueError(
            f"logits must be targets' shape plus a class dimension, (..., classes); "
            f"got logits {tuple(logits.shape)} and targets {tuple(targets.shape)}"
        )
    if targets.numel() == 0:
        raise ValueError("targets is empty; expected at least one target")


def _scored_positions(targets: torch.Tensor, ignore_index: int | None) -> torch.Tensor:
    """Mask of the targets to score: all but those equal to ``ignore_index`` (e.g. the padding id)."""
    keep = targets != ignore_index if ignore_index is not None else torch.ones_like(targets, dtype=torch.bool)
    if not keep.any():
        raise ValueError(f"every target equals ignore_index={ignore_index}; nothing to score")
    return keep


def accuracy(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int | None = None) -> float:
    """Fraction of positions where the arg-max of ``logits`` (..., classes) equals ``targets`` (...).

    Positions whose target is ``ignore_index`` (e.g. the padding id) are left out.
    """
    _check_logits_targets(logits, targets)
    keep = _scored_positions(targets, ignore_index)
    correct = (logits.argmax(-1) == targets) & keep
    return correct.sum().item() / keep.sum().item()


def perplexity(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int | None = None) -> float:
    """exp(mean cross-entropy in nats): a model as unsure as a uniform choice among k tokens has perplexity k."""
    _check_logits_targets(logits, targets)
    _scored_positions(targets, ignore_index)
    loss = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]),  # (positions, classes)
        targets.reshape(-1),  # (positions,)
        ignore_index=ignore_index if ignore_index is not None else -100,
    )
    return math.exp(loss.item())


@dataclass(frozen=True)
class CorpusScore:
    """A corpus score from sacreBLEU (BLEU or chrF, 0-100) with its signature, which says exactly how it was
    computed (tokenizer, smoothing, n-gram orders, version): quote it beside the number."""

    score: float
    signature: str
    details: str

    def __str__(self) -> str:
        return f"{self.details}\n{self.signature}"


BleuResult = CorpusScore  # the name Chapter 1's API gave it


def corpus_bleu(
    hypotheses: Sequence[str], references: Sequence[str] | Sequence[Sequence[str]], tokenize: str | None = None
) -> CorpusScore:
    """Corpus BLEU of detokenized ``hypotheses`` against one reference per hypothesis (or several: a list of
    reference streams, each as long as ``hypotheses``).

    ``tokenize`` is sacreBLEU's tokenizer; its default ("13a") suits European languages, use "zh" for Chinese
    and "ja-mecab" for Japanese, and "char" where whole outputs are single words (BLEU's 4-grams of words need
    at least four words per sentence).
    """
    from sacrebleu.metrics import BLEU

    if tokenize is not None and tokenize not in BLEU.TOKENIZERS:
        raise ValueError(f"tokenize must be one of sacreBLEU's tokenizers {sorted(BLEU.TOKENIZERS)}, got {tokenize!r}")
    return _sacrebleu_score(BLEU(tokenize=tokenize), hypotheses, references)


def corpus_chrf(hypotheses: Sequence[str], references: Sequence[str] | Sequence[Sequence[str]]) -> CorpusScore:
    """Corpus chrF (Popović 2015): the F-score (recall weighted twice, beta = 2) of character n-grams up to 6.

    It needs no tokenizer and gives partial credit to a word that is almost right, which suits outputs such as
    German compound numbers; sacreBLEU's default settings, with its signature.
    """
    from sacrebleu.metrics import CHRF

    return _sacrebleu_score(CHRF(), hypotheses, references)


def exact_match(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """The fraction of hypotheses identical to their reference (0-1): a translation is right or it is not."""
    streams = _reference_streams(hypotheses, references)
    if len(streams) != 1:
        raise ValueError("exact_match takes one reference per hypothesis, not several streams")
    return sum(hypothesis == reference for hypothesis, reference in zip(hypotheses, streams[0], strict=True)) / len(
        hypotheses
    )


def _sacrebleu_score(metric, hypotheses: Sequence[str], references) -> CorpusScore:
    result = metric.corpus_score(list(hypotheses), _reference_streams(hypotheses, references))
    return CorpusScore(score=result.score, signature=str(metric.get_signature()), details=str(result))


def _reference_streams(hypotheses: Sequence[str], references) -> list[list[str]]:
    """Check the sentences and return the references as a list of streams, each as long as ``hypotheses``."""
    for name, sentences in (("hypotheses", hypotheses), ("references", references)):
        if isinstance(sentences, str):
            raise TypeError(f"{name} must be a list of sentences, got a single str")
        check_not_empty(name, sentences)
    streams = [list(references)] if isinstance(references[0], str) else [list(r) for r in references]
    for index, stream in enumerate(streams):
        if len(stream) != len(hypotheses):
            raise ValueError(
                f"references stream {index} has {len(stream)} sentences but hypotheses has {len(hypotheses)}; "
                "each stream needs one reference per hypothesis"
            )
    return streams
