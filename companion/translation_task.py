"""The translation task of Parts III-V, end to end: characters to ids, batches, a training recipe, and scores.

Chapter 5 trains the plain encoder-decoder here, Chapter 6 decodes it in several ways, Chapter 7 trains the
attention models with the very same data, recipe and scoring, so that the comparison changes one thing::

    task = TranslationTask(number_pairs("en", "de"))          # "twenty-four" -> "vierundzwanzig"
    model = Seq2Seq(task.model_config(hidden_size=128))       # Chapter 7: Seq2Seq(config, attention=...)
    history = train_translator(model, task, CHAPTER5_RECIPE, seed=0)
    scores = evaluate(model, task, "test")                    # exact match, chrF, BLEU (sacreBLEU signatures)

Sentences are split into characters (``CharTokenizer``): the German number words are long compounds
("siebentausendsiebenhundertsiebenundsiebzig"), so characters are the natural unit. Every target is wrapped as
``<bos> ... <eos>``; ``reverse_source`` reverses each source's characters (Sutskever et al. 2014's trick).
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from companion.data.batching import PairBatch, pair_collator
from companion.data.translation import TranslationSplits
from companion.data.vocab import BOS, EOS, CharTokenizer, Vocab
from companion.decoding import Hypotheses, beam_search, greedy
from companion.metrics import corpus_bleu, corpus_chrf, exact_match
from companion.seq2seq import Seq2SeqConfig, teacher_forcing_loss
from companion.training import History, Trainer, loss_on

SPLITS = ("train", "valid", "test")
Search = Callable[[nn.Module, torch.Tensor, Any, int, int], Hypotheses]  # (model, prompt, state, max_len, end)


class TranslationTask:
    """A ``TranslationSplits`` as a model sees it: character vocabularies, id tensors, batches and decoding.

    Args:
        splits: the sentence pairs (``companion.data.number_pairs`` or ``date_pairs``).
        reverse_source: feed every source reversed, last character first.

    The vocabularies are built from the training pairs only; a character never seen there becomes ``<unk>``.
    """

    def __init__(self, splits: TranslationSplits, reverse_source: bool = False) -> None:
        if not isinstance(splits, TranslationSplits):
            raise TypeError(f"splits must be a TranslationSplits, got {type(splits).__name__}")
        self.splits = splits
        self.reverse_source = reverse_source
        self.tokenizer = CharTokenizer()
        self.source_vocab = Vocab.build([list(source) for source, _ in splits.train])
        self.target_vocab = Vocab.build([list(target) for _, target in splits.train], specials=(BOS, EOS))
        self.bos_id, self.eos_id = self.target_vocab.token_to_id[BOS], self.target_vocab.token_to_id[EOS]
        self.pad_id = self.target_vocab.pad_id
        # Room to spare over the longest training target (+1 for the end token): a model that loops stops here.
        self.max_output_length = max(len(target) for _, target in splits.train) + 10

    def __repr__(self) -> str:
        reversed_ = ", reversed source" if self.reverse_source else ""
        return (
            f"TranslationTask({self.splits.source_language} -> {self.splits.target_language}{reversed_}: "
            f"{len(self.source_vocab)} source and {len(self.target_vocab)} target tokens)"
        )

    def with_reversed_source(self, reverse_source: bool = True) -> TranslationTask:
        """The same pairs and vocabularies, with the source reversed (or not)."""
        task = TranslationTask.__new__(TranslationTask)
        task.__dict__.update(self.__dict__)
        task.reverse_source = reverse_source
        return task

    def model_config(self, **choices: Any) -> Seq2SeqConfig:
        """A ``Seq2SeqConfig`` with this task's vocabulary sizes; ``choices`` override the other fields."""
        return Seq2SeqConfig(len(self.source_vocab), len(self.target_vocab), pad_id=self.pad_id, **choices)

    def pairs(self, split: str) -> list[tuple[str, str]]:
        """The (source, target) sentences of ``split`` ("train", "valid" or "test")."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return getattr(self.splits, split)

    def encode_source(self, text: str) -> list[int]:
        """A source sentence as ids (reversed when the task says so)."""
        ids = self.source_vocab.encode(self.tokenizer.tokenize(text))
        return ids[::-1] if self.reverse_source else ids

    def encode_target(self, text: str) -> list[int]:
        """A target sentence as ids, wrapped in the start and end tokens."""
        return [self.bos_id, *self.target_vocab.encode(self.tokenizer.tokenize(text)), self.eos_id]

    def decode_target(self, ids: Sequence[int]) -> str:
        """Ids back to text, stopping at the end token (the start token and padding are dropped)."""
        tokens = []
        for index in ids:
            if index == self.eos_id:
                break
            if index not in (self.bos_id, self.pad_id):
                tokens.append(index)
        return self.tokenizer.detokenize(self.target_vocab.decode(tokens))

    def batch(self, pairs: Sequence[tuple[str, str]]) -> PairBatch:
        """A padded ``PairBatch`` of sentence pairs."""
        return self._collate([(self.encode_source(s), self.encode_target(t)) for s, t in pairs])

    def sources(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Source sentences as a padded batch: ids (N, S) and lengths (N,)."""
        batch = self.batch([(text, "") for text in texts])
        return batch.source, batch.source_lengths

    def loader(
        self,
        split: str,
        batch_size: int,
        *,
        steps: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.utils.data.DataLoader:
        """Batches of ``split``: in order (for evaluation), or ``steps`` batches drawn at random (for training)."""
        examples = [(self.encode_source(s), self.encode_target(t)) for s, t in self.pairs(split)]
        sampler = None
        if steps is not None:
            sampler = torch.utils.data.RandomSampler(examples, num_samples=steps * batch_size, generator=generator)
        return torch.utils.data.DataLoader(examples, batch_size=batch_size, sampler=sampler, collate_fn=self._collate)

    @property
    def _collate(self) -> Callable:
        return pair_collator(self.pad_id)


@dataclass(frozen=True)
class Recipe:
    """How a translator is trained: Adam for ``steps`` updates of ``batch_size`` pairs drawn at random.

    ``lr`` decays by cosine to ``lr * final_lr_fraction``; gradients are clipped to ``clip`` (global norm);
    the training curve gets ``epochs`` points, each with the validation loss (on up to ``valid_pairs`` pairs).
    """

    steps: int = 480
    batch_size: int = 64
    lr: float = 0.01
    clip: float = 1.0
    final_lr_fraction: float = 0.05
    epochs: int = 8
    valid_pairs: int = 512

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "epochs", "valid_pairs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.steps % self.epochs:
            raise ValueError(f"steps ({self.steps}) must be a multiple of epochs ({self.epochs})")
        for name in ("lr", "clip"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        if not 0 < self.final_lr_fraction <= 1:
            raise ValueError(f"final_lr_fraction must lie in (0, 1], got {self.final_lr_fraction!r}")

    def scaled(self, **changes: Any) -> Recipe:
        """The same recipe with some fields changed."""
        return replace(self, **changes)


# Chapter 5's model and recipe, the baseline that Chapter 7's attention models are measured against.
CHAPTER5_MODEL = {"embedding_dim": 32, "hidden_size": 128, "cell": "gru"}
CHAPTER5_RECIPE = Recipe()


def train_translator(
    model: nn.Module,
    task: TranslationTask,
    recipe: Recipe = CHAPTER5_RECIPE,
    *,
    seed: int = 0,
    device: torch.device | str | None = None,
    progress: bool = True,
    stop_after: int | None = None,
) -> History:
    """Train ``model`` on ``task``'s training pairs with teacher forcing (``teacher_forcing_loss``).

    The batches are drawn by a ``torch.Generator`` seeded with ``seed``, so the same seed and initial weights
    give the same run. ``stop_after`` ends the run after that many of the recipe's epochs, the learning rate
    following the whole recipe's schedule: the first epochs of a run, exactly (a cheap rerun of a benchmark's
    start). Returns the ``Trainer``'s history (``train_loss`` and ``val_loss`` per epoch).
    """
    if stop_after is not None and not 1 <= stop_after <= recipe.epochs:
        raise ValueError(f"stop_after must lie in [1, {recipe.epochs}] (the recipe's epochs), got {stop_after!r}")
    generator = torch.Generator().manual_seed(seed)
    per_epoch = recipe.steps // recipe.epochs
    train = task.loader("train", recipe.batch_size, steps=per_epoch, generator=generator)
    valid = [task.batch(task.pairs("valid")[: recipe.valid_pairs])]  # one batch
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.lr)
    decay = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=recipe.steps, eta_min=recipe.lr * recipe.final_lr_fraction
    )
    trainer = Trainer(
        model,
        optimizer,
        teacher_forcing_loss,
        clip_grad_norm=recipe.clip,
        scheduler=decay,
        evaluate=loss_on(valid, teacher_forcing_loss),
        device=device,
        progress=progress,
    )
    return trainer.fit(train, epochs=recipe.epochs if stop_after is None else stop_after)


def tune_then_repeat(run: Callable[..., dict], learning_rates: Sequence[float], seeds: Sequence[int]) -> list[dict]:
    """The sweeps' protocol: every learning rate with the first seed, then the other seeds at the best of them.

    ``run(seed=…, lr=…)`` trains and measures one model and returns its record, with ``val_loss`` per epoch. The rate
    whose run ends with the lowest validation loss is chosen; every record gets ``chosen_lr`` (True for the chosen
    run and for the other seeds' runs). Returns the records, the first seed's first.
    """
    first, *others = seeds
    tried = [run(seed=first, lr=lr) for lr in learning_rates]
    best = min(tried, key=lambda record: record["val_loss"][-1])
    for record in tried:
        record["chosen_lr"] = record is best
    return tried + [run(seed=seed, lr=best["lr"]) | {"chosen_lr": True} for seed in others]


def search(
    model: nn.Module,
    task: TranslationTask,
    texts: Sequence[str],
    *,
    beam_size: int = 1,
    alpha: float = 0.0,
    batch_size: int = 256,
    max_length: int | None = None,
) -> Hypotheses:
    """Decode source ``texts`` greedily (``beam_size=1``) or by beam search; returns the joined ``Hypotheses``."""
    max_length = max_length or task.max_output_length
    device = next(model.parameters()).device
    found = []
    for start in range(0, len(texts), batch_size):
        source, lengths = task.sources(texts[start : start + batch_size])
        with torch.inference_mode():
            state = model.eval().encode(source.to(device), lengths.to(device))
        prompt = torch.full((len(source), 1), task.bos_id, device=device)
        if beam_size == 1:
            found.append(greedy(model, prompt, max_length, task.eos_id, state=state))
        else:
            found.append(
                beam_search(model, prompt, max_length, task.eos_id, beam_size=beam_size, alpha=alpha, state=state)
            )
    return concatenate(found, task.pad_id)


def concatenate(parts: Sequence[Hypotheses], pad_id: int = 0) -> Hypotheses:
    """Join ``Hypotheses`` of several batches (same K) into one, padding the ids to the longest."""
    width = max(part.ids.shape[-1] for part in parts)
    ids = torch.cat(
        [nn.functional.pad(part.ids, (0, width - part.ids.shape[-1]), value=pad_id) for part in parts], dim=0
    )
    return Hypotheses(
        ids,
        *(torch.cat([getattr(part, name) for part in parts], dim=0) for name in ("lengths", "log_probs", "scores")),
        torch.cat([part.finished for part in parts], dim=0),
    )


def translate(model: nn.Module, task: TranslationTask, texts: Sequence[str], **search_options: Any) -> list[str]:
    """The best output for each source text, as text (``search_options`` as for ``search``)."""
    found = search(model, task, texts, **search_options)
    return [task.decode_target(row) for row in found.best.tolist()]


@dataclass(frozen=True)
class TranslationScores:
    """Exact match (0-1), chrF and BLEU (0-100, sacreBLEU) of a set of translations, with sacreBLEU's signatures.

    BLEU is computed on characters (sacreBLEU's ``tokenize="char"``): a German number is one word, and BLEU over
    words (its 4-grams need at least four words) scores even perfect one-word outputs 0.
    """

    exact_match: float
    chrf: float
    bleu: float
    chrf_signature: str
    bleu_signature: str
    count: int

    def __str__(self) -> str:
        return (
            f"exact match {self.exact_match:.1%}, chrF {self.chrf:.1f}, BLEU {self.bleu:.1f} on {self.count} pairs\n"
            f"  chrF: {self.chrf_signature}\n  BLEU: {self.bleu_signature}"
        )


def score_translations(hypotheses: Sequence[str], references: Sequence[str]) -> TranslationScores:
    """Exact match, chrF and (character) BLEU of ``hypotheses`` against one reference each."""
    chrf = corpus_chrf(hypotheses, references)
    bleu = corpus_bleu(hypotheses, references, tokenize="char")
    return TranslationScores(
        exact_match(hypotheses, references), chrf.score, bleu.score, chrf.signature, bleu.signature, len(hypotheses)
    )


def evaluate(
    model: nn.Module, task: TranslationTask, split: str = "test", limit: int | None = None, **search_options: Any
) -> TranslationScores:
    """Translate the sources of ``split`` (the first ``limit`` pairs, or all) and score them."""
    pairs = task.pairs(split)[:limit]
    outputs = translate(model, task, [source for source, _ in pairs], **search_options)
    return score_translations(outputs, [target for _, target in pairs])


@dataclass(frozen=True)
class WordLookup:
    """The cheap baseline for translation: a dictionary of words learned from the training pairs, applied word by
    word in source order (no reordering, no context).

    ``fit`` reads the training pairs whose source and target have the same number of words (split on whitespace,
    punctuation kept on its word: "vierundzwanzig," is a word) and pairs their words by position; each source word
    is translated as the target word it was paired with most often (ties: the first seen). A source word never seen
    so is copied unchanged. On a task whose words map one to one (a list of numbers) this is close to perfect; on
    one where a word's translation depends on its neighbours or moves ("twenty-four" -> "vierundzwanzig") it fails,
    and that is its point: what a model does beyond it is what it learned beyond a word list.

    Attributes:
        table: source word -> target word.
        aligned_pairs: how many training pairs had equal word counts (the ones the table was learned from).
    """

    table: dict[str, str]
    aligned_pairs: int

    @classmethod
    def fit(cls, pairs: Sequence[tuple[str, str]]) -> WordLookup:
        """Learn the table from (source, target) sentence pairs; raises if no pair has equal word counts."""
        counts: defaultdict[str, Counter[str]] = defaultdict(Counter)
        aligned = 0
        for source, target in pairs:
            source_words, target_words = source.split(), target.split()
            if len(source_words) == len(target_words):
                aligned += 1
                for source_word, target_word in zip(source_words, target_words, strict=True):
                    counts[source_word][target_word] += 1
        if not aligned:
            raise ValueError(
                f"none of the {len(pairs)} pairs has as many source words as target words; nothing to learn from"
            )
        return cls({word: seen.most_common(1)[0][0] for word, seen in counts.items()}, aligned)

    def translate(self, text: str) -> str:
        """``text`` word by word through the table (unknown words copied), joined by single spaces."""
        return " ".join(self.table.get(word, word) for word in text.split())

    def __call__(self, texts: Sequence[str]) -> list[str]:
        """``translate`` for each of ``texts``."""
        return [self.translate(text) for text in texts]

    def score(self, pairs: Sequence[tuple[str, str]]) -> TranslationScores:
        """Translate the sources of ``pairs`` and score them against their targets, as ``evaluate`` scores a model."""
        return score_translations(self([source for source, _ in pairs]), [target for _, target in pairs])


@dataclass(frozen=True)
class ForcingGap:
    """Token accuracy with the gold prefix given (teacher forcing) and with the model's own prefix (free running).

    Attributes:
        teacher_forced: share of the reference tokens (end token included) that are the model's arg-max when the
            decoder is fed the gold prefix: what the training loss sees.
        free_running: share of the reference tokens that greedy decoding writes at the same position.
        after_first_error_forced, after_first_error_free: the same two accuracies counted only at the positions
            after greedy decoding's first mistake (None when it made none): once the model has fed itself a wrong
            token, free running must continue from it, teacher forcing never does.
        exact_match: share of references the model gets entirely right; the same under both, since greedy
            decoding follows the gold prefix exactly as long as every arg-max is right.
    """

    teacher_forced: float
    free_running: float
    after_first_error_forced: float | None
    after_first_error_free: float | None
    exact_match: float


def forcing_gap(model: nn.Module, task: TranslationTask, pairs: Sequence[tuple[str, str]]) -> ForcingGap:
    """Measure ``ForcingGap`` on ``pairs`` (teacher forcing in one call; greedy decoding with ``search``)."""
    device = next(model.parameters()).device
    batch = task.batch(pairs).to(device)
    with torch.inference_mode():
        model.eval()
        logits, _ = model(batch.target[:, :-1], model.encode(batch.source, batch.source_lengths))  # (B, T - 1, V)
    gold = batch.target[:, 1:]  # (B, T - 1): the reference after the start token, end token included
    real = torch.arange(gold.shape[1], device=device)[None, :] < (batch.target_lengths[:, None] - 1)
    forced_right = (logits.argmax(-1) == gold) & real
    found = search(model, task, [source for source, _ in pairs])
    width = gold.shape[1]
    free = nn.functional.pad(found.best, (0, max(0, width - found.best.shape[1])), value=task.pad_id)[:, :width]
    free_right = (free.to(device) == gold) & real
    wrong = real & ~free_right
    first_error = torch.where(wrong.any(1), wrong.float().argmax(1), width)  # (B,): position of the first mistake
    after = real & (torch.arange(width, device=device)[None, :] > first_error[:, None])
    return ForcingGap(
        teacher_forced=(forced_right.sum() / real.sum()).item(),
        free_running=(free_right.sum() / real.sum()).item(),
        after_first_error_forced=(forced_right & after).sum().item() / after.sum().item() if after.any() else None,
        after_first_error_free=(free_right & after).sum().item() / after.sum().item() if after.any() else None,
        exact_match=(forced_right | ~real).all(1).float().mean().item(),
    )


def exact_match_by_length(
    outputs: Sequence[str], pairs: Sequence[tuple[str, str]], edges: Sequence[int]
) -> list[dict[str, float]]:
    """Exact match of ``outputs`` against ``pairs``' targets, by the source's length in characters.

    ``edges`` (increasing) bound the buckets ``[edges[i], edges[i + 1])``; returns one record per bucket with its
    bounds, the number of pairs in it and their exact match (None for an empty bucket).
    """
    if list(edges) != sorted(set(edges)) or len(edges) < 2:
        raise ValueError(f"edges must be at least two increasing numbers, got {list(edges)!r}")
    if len(outputs) != len(pairs):
        raise ValueError(f"outputs has {len(outputs)} sentences but pairs has {len(pairs)}")
    buckets = []
    for low, high in itertools.pairwise(edges):
        hits = [
            output == target
            for output, (source, target) in zip(outputs, pairs, strict=True)
            if low <= len(source) < high
        ]
        buckets.append(
            {"low": low, "high": high, "count": len(hits), "exact_match": sum(hits) / len(hits) if hits else None}
        )
    outside = sum(not edges[0] <= len(source) < edges[-1] for source, _ in pairs)
    if outside:
        raise ValueError(f"{outside} sources are shorter than {edges[0]} or at least {edges[-1]} characters long")
    return buckets
