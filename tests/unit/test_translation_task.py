"""companion.translation_task: encoding and decoding sentences, batches, the recipe, scores, the forcing gap."""

import pytest
import torch

from companion.data import number_list_pairs, number_pairs
from companion.data.vocab import BOS, EOS
from companion.seq2seq import Seq2Seq
from companion.translation_task import (
    Recipe,
    TranslationTask,
    WordLookup,
    evaluate,
    exact_match_by_length,
    forcing_gap,
    score_translations,
    search,
    train_translator,
    translate,
    tune_then_repeat,
)


@pytest.fixture(scope="module")
def task():
    return TranslationTask(number_pairs("en", "de", high=199))


def test_targets_are_wrapped_and_decoded_back(task):
    ids = task.encode_target("vierundzwanzig")
    assert ids[0] == task.bos_id
    assert ids[-1] == task.eos_id
    assert task.target_vocab.decode([task.bos_id, task.eos_id]) == [BOS, EOS]
    assert task.decode_target(ids) == "vierundzwanzig"
    assert task.decode_target([*ids[1:-1], task.eos_id, *ids[1:3]]) == "vierundzwanzig", "stops at the end token"


def test_reversal_reverses_the_source_only(task):
    backwards = task.with_reversed_source()
    assert backwards.encode_source("forty-two") == task.encode_source("forty-two")[::-1]
    assert backwards.encode_target("zweiundvierzig") == task.encode_target("zweiundvierzig")
    assert backwards.source_vocab is task.source_vocab
    assert not task.reverse_source


def test_batches_and_loaders(task):
    batch = task.batch([("two", "zwei"), ("twenty-two", "zweiundzwanzig")])
    assert batch.source.shape == (2, 10)
    assert batch.source_lengths.tolist() == [3, 10]
    assert batch.target_lengths.tolist() == [6, 16]
    train = task.loader("train", 8, steps=5, generator=torch.Generator().manual_seed(0))
    assert len(list(train)) == 5
    assert sum(len(b.source) for b in task.loader("test", 7)) == len(task.pairs("test"))
    with pytest.raises(ValueError, match="split must be one of"):
        task.pairs("dev")


def test_recipe_checks_its_fields():
    with pytest.raises(ValueError, match=r"steps \(10\) must be a multiple of epochs \(3\)"):
        Recipe(steps=10, epochs=3)
    with pytest.raises(ValueError, match="lr must be positive"):
        Recipe(lr=0)
    assert Recipe().scaled(steps=60, epochs=3).steps == 60


def test_scores_of_perfect_and_wrong_outputs():
    perfect = score_translations(["vier", "zehn"], ["vier", "zehn"])
    assert perfect.exact_match == 1.0
    assert (perfect.chrf, perfect.bleu) == pytest.approx((100.0, 100.0))
    assert "tok:char" in perfect.bleu_signature
    assert "nc:6" in perfect.chrf_signature
    half = score_translations(["vier", "elf"], ["vier", "zehn"])
    assert half.exact_match == 0.5
    assert half.chrf < 100
    assert "exact match 50.0%" in str(half)


def test_exact_match_by_length_buckets_the_sources():
    pairs = [("one", "eins"), ("two", "zwei"), ("twenty", "zwanzig")]
    buckets = exact_match_by_length(["eins", "drei", "zwanzig"], pairs, [1, 4, 10, 20])
    assert [b["count"] for b in buckets] == [2, 1, 0]
    assert [b["exact_match"] for b in buckets] == [0.5, 1.0, None]
    with pytest.raises(ValueError, match="1 sources are shorter than 1 or at least 3 characters long"):
        exact_match_by_length(["eins"], [("one", "eins")], [1, 3])


def test_a_short_training_run_learns_and_decoding_agrees(task):
    torch.manual_seed(0)
    model = Seq2Seq(task.model_config(embedding_dim=8, hidden_size=32))
    recipe = Recipe(steps=150, batch_size=32, lr=0.01, epochs=3, valid_pairs=16)
    history = train_translator(model, task, recipe, seed=0, progress=False)
    assert history.last("val_loss") < history.series("val_loss")[1][0]
    torch.manual_seed(0)
    start = Seq2Seq(task.model_config(embedding_dim=8, hidden_size=32))
    first = train_translator(start, task, recipe, seed=0, progress=False, stop_after=1)
    assert first.series("val_loss")[1] == pytest.approx(history.series("val_loss")[1][:1]), "the run's first epoch"
    with pytest.raises(ValueError, match=r"stop_after must lie in \[1, 3\]"):
        train_translator(start, task, recipe, stop_after=4)
    pairs = task.pairs("test")
    scores = evaluate(model, task, "test")
    assert scores.count == len(pairs)
    assert 0 <= scores.exact_match <= 1
    gap = forcing_gap(model, task, pairs)
    assert gap.exact_match == pytest.approx(scores.exact_match), "greedy is right exactly when every forced step is"
    assert gap.free_running <= gap.teacher_forced + 1e-9
    beams = search(model, task, [s for s, _ in pairs[:5]], beam_size=3)
    assert beams.ids.shape[:2] == (5, 3)
    assert translate(model, task, [s for s, _ in pairs[:5]], beam_size=1) == translate(
        model, task, [s for s, _ in pairs[:5]]
    )


def test_the_first_seed_tunes_the_rate_and_the_other_seeds_reuse_it():
    def run(seed, lr):
        return {"seed": seed, "lr": lr, "val_loss": [1.0, abs(lr - 0.01)]}

    records = tune_then_repeat(run, [0.003, 0.01, 0.03], [7, 8, 9])
    assert [(r["seed"], r["lr"], r["chosen_lr"]) for r in records] == [
        (7, 0.003, False),
        (7, 0.01, True),
        (7, 0.03, False),
        (8, 0.01, True),
        (9, 0.01, True),
    ]


def test_the_word_lookup_translates_word_by_word_in_source_order():
    pairs = [("one two", "eins zwei"), ("two, one", "zwei, eins"), ("two three", "zwei drei"), ("one and", "eins")]
    lookup = WordLookup.fit(pairs)
    assert lookup.aligned_pairs == 3, "the pair with unequal word counts is skipped"
    assert lookup.translate("three  one two") == "drei eins zwei"
    assert lookup(["two, four"]) == ["zwei, four"], "an unknown word is copied"
    assert "and" not in lookup.table
    assert WordLookup.fit([("a", "x"), ("a", "y"), ("a", "y"), ("b", "z")]).table == {"a": "y", "b": "z"}
    with pytest.raises(ValueError, match="none of the 1 pairs has as many source words as target words"):
        WordLookup.fit([("one two", "zwölf")])


def test_the_word_lookup_solves_number_lists_but_not_single_numbers():
    lists = number_list_pairs("de", "digits", count=2000)
    lookup = WordLookup.fit(lists.train)
    sources, targets = zip(*lists.test, strict=True)
    assert score_translations(lookup(sources), targets).exact_match > 0.95
    numbers = number_pairs("en", "de", high=199)
    sources, targets = zip(*numbers.test, strict=True)
    assert score_translations(WordLookup.fit(numbers.train)(sources), targets).exact_match < 0.1


def test_a_word_lookup_scores_pairs_as_evaluate_scores_a_model():
    pairs = [("vier, sieben", "4, 7"), ("sieben", "7"), ("vier", "4")]
    lookup = WordLookup.fit(pairs)
    assert lookup.score(pairs).exact_match == 1.0
    assert lookup.score([("vier", "5")]).exact_match == 0.0
