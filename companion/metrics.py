"""Metrics: token accuracy, perplexity, and corpus BLEU through sacreBLEU (never a hand-written BLEU)."""

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
class BleuResult:
    """A corpus BLEU score (0-100) with sacreBLEU's signature, which says exactly how it was computed."""

    score: float
    signature: str
    details: str

    def __str__(self) -> str:
        return f"{self.details}\n{self.signature}"


def corpus_bleu(
    hypotheses: Sequence[str], references: Sequence[str] | Sequence[Sequence[str]], tokenize: str | None = None
) -> BleuResult:
    """Corpus BLEU of detokenized ``hypotheses`` against one reference per hypothesis (or several: a list of
    reference streams, each as long as ``hypotheses``).

    ``tokenize`` is sacreBLEU's tokenizer; its default ("13a") suits European languages, use "zh" for Chinese
    and "ja-mecab" for Japanese.
    """
    from sacrebleu.metrics import BLEU

    for name, sentences in (("hypotheses", hypotheses), ("references", references)):
        if isinstance(sentences, str):
            raise TypeError(f"{name} must be a list of sentences, got a single str")
        check_not_empty(name, sentences)
    if tokenize is not None and tokenize not in BLEU.TOKENIZERS:
        raise ValueError(f"tokenize must be one of sacreBLEU's tokenizers {sorted(BLEU.TOKENIZERS)}, got {tokenize!r}")
    streams = [list(references)] if references and isinstance(references[0], str) else [list(r) for r in references]
    for index, stream in enumerate(streams):
        if len(stream) != len(hypotheses):
            raise ValueError(
                f"references stream {index} has {len(stream)} sentences but hypotheses has {len(hypotheses)}; "
                "each stream needs one reference per hypothesis"
            )
    metric = BLEU(tokenize=tokenize)
    result = metric.corpus_score(list(hypotheses), streams)
    return BleuResult(score=result.score, signature=str(metric.get_signature()), details=str(result))
