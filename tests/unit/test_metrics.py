"""companion.metrics: accuracy, perplexity and sacreBLEU's corpus BLEU with its signature."""

import math

import pytest
import sacrebleu
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st

from companion.metrics import BleuResult, accuracy, corpus_bleu, perplexity


def one_hot_logits(predictions: list[int], classes: int) -> torch.Tensor:
    return F.one_hot(torch.tensor(predictions), classes).float() * 5.0  # (positions, classes)


# ---------------------------------------------------------------- accuracy


def test_accuracy_counts_argmax_matches():
    logits = one_hot_logits([0, 1, 2, 2], classes=3)
    assert accuracy(logits, torch.tensor([0, 1, 2, 0])) == 0.75


def test_accuracy_over_batch_and_time():
    logits = one_hot_logits([1, 2, 3, 1, 2, 3], classes=4).reshape(2, 3, 4)  # (batch, time, classes)
    targets = torch.tensor([[1, 2, 0], [1, 0, 0]])
    assert accuracy(logits, targets) == pytest.approx(3 / 6)


def test_accuracy_leaves_out_ignored_positions():
    logits = one_hot_logits([1, 2, 3, 1, 2, 3], classes=4).reshape(2, 3, 4)
    targets = torch.tensor([[1, 2, 0], [1, 0, 0]])  # 0 is padding: 3 real positions, all right
    assert accuracy(logits, targets, ignore_index=0) == 1.0


@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=1, max_size=30), st.integers(0, 4))
def test_accuracy_matches_a_direct_count(pairs, ignore):
    predictions, targets = zip(*pairs, strict=True)
    logits = one_hot_logits(list(predictions), classes=5)
    kept = [(p, t) for p, t in pairs if t != ignore]
    if not kept:
        with pytest.raises(ValueError, match=rf"every target equals ignore_index={ignore}; nothing to score"):
            accuracy(logits, torch.tensor(targets), ignore_index=ignore)
        return
    expected = sum(p == t for p, t in kept) / len(kept)
    assert accuracy(logits, torch.tensor(targets), ignore_index=ignore) == pytest.approx(expected)
    assert accuracy(logits, torch.tensor(targets)) == pytest.approx(sum(p == t for p, t in pairs) / len(pairs))


@pytest.mark.parametrize("metric", [accuracy, perplexity])
def test_mismatched_shapes_are_named(metric):
    with pytest.raises(
        ValueError,
        match=r"logits must be targets' shape plus a class dimension, \(\.\.\., classes\); "
        r"got logits \(2, 3, 4\) and targets \(2, 4\)",
    ):
        metric(torch.zeros(2, 3, 4), torch.zeros(2, 4, dtype=torch.long))


@pytest.mark.parametrize("metric", [accuracy, perplexity])
def test_logits_without_a_class_dimension_are_refused(metric):
    with pytest.raises(ValueError, match=r"got logits \(2, 3\) and targets \(2, 3\)"):
        metric(torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.long))


@pytest.mark.parametrize("metric", [accuracy, perplexity])
def test_non_tensors_are_refused(metric):
    with pytest.raises(TypeError, match=r"logits must be a torch\.Tensor, got list"):
        metric([[0.0, 1.0]], torch.tensor([1]))
    with pytest.raises(TypeError, match=r"targets must be a torch\.Tensor, got list"):
        metric(torch.zeros(1, 2), [1])


@pytest.mark.parametrize("metric", [accuracy, perplexity])
def test_empty_targets_are_refused(metric):
    with pytest.raises(ValueError, match=r"^targets is empty; expected at least one target$"):
        metric(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))


# ---------------------------------------------------------------- perplexity


@pytest.mark.parametrize("classes", [2, 7, 100])
def test_uniform_logits_over_k_classes_have_perplexity_k(classes):
    logits = torch.full((4, 5, classes), 3.0)
    targets = torch.randint(0, classes, (4, 5), generator=torch.Generator().manual_seed(classes))
    assert perplexity(logits, targets) == pytest.approx(classes, rel=1e-5)


def test_a_confident_right_model_has_perplexity_near_one():
    logits = one_hot_logits([0, 1, 2], classes=3) * 10
    assert perplexity(logits, torch.tensor([0, 1, 2])) == pytest.approx(1.0, abs=1e-6)


def test_perplexity_is_exp_of_mean_cross_entropy():
    logits = torch.randn(6, 9, generator=torch.Generator().manual_seed(0))
    targets = torch.tensor([0, 3, 8, 2, 2, 5])
    assert perplexity(logits, targets) == pytest.approx(math.exp(F.cross_entropy(logits, targets).item()))


def test_perplexity_leaves_out_ignored_positions():
    logits = torch.randn(2, 4, 6, generator=torch.Generator().manual_seed(1))
    targets = torch.tensor([[3, 1, 0, 0], [5, 4, 2, 0]])
    keep = targets != 0
    expected = math.exp(F.cross_entropy(logits[keep], targets[keep]).item())
    assert perplexity(logits, targets, ignore_index=0) == pytest.approx(expected, rel=1e-6)
    assert perplexity(logits, targets) != pytest.approx(expected, rel=1e-3)


def test_perplexity_refuses_a_batch_with_every_target_ignored():
    with pytest.raises(ValueError, match=r"ignore_index"):
        perplexity(torch.zeros(3, 4), torch.zeros(3, dtype=torch.long), ignore_index=0)


# ---------------------------------------------------------------- corpus_bleu

HYPOTHESES = ["the cat sat on the mat", "a dog barked at the mailman today"]
REFERENCES = ["the cat sat on the mat", "the dog barked at the postman today"]


def test_perfect_match_scores_100_with_sacrebleus_default_signature():
    result = corpus_bleu(REFERENCES, REFERENCES)
    assert isinstance(result, BleuResult)
    assert result.score == pytest.approx(100.0)
    assert "nrefs:1" in result.signature
    assert "tok:13a" in result.signature
    assert f"version:{sacrebleu.__version__}" in result.signature
    assert str(result) == f"{result.details}\n{result.signature}"
    assert result.details.startswith("BLEU = 100.00")


def test_score_equals_sacrebleu_itself():
    result = corpus_bleu(HYPOTHESES, REFERENCES)
    assert 0 < result.score < 100
    assert result.score == pytest.approx(sacrebleu.corpus_bleu(HYPOTHESES, [REFERENCES]).score)


def test_accepts_tuples():
    assert corpus_bleu(tuple(HYPOTHESES), tuple(REFERENCES)).score == corpus_bleu(HYPOTHESES, REFERENCES).score


def test_several_reference_streams():
    second = ["a cat was sitting on the mat", "a dog barked at the mailman today"]
    result = corpus_bleu(HYPOTHESES, [REFERENCES, second])
    assert "nrefs:2" in result.signature
    assert result.score == pytest.approx(100.0)  # each hypothesis matches one of its references exactly
    assert result.score > corpus_bleu(HYPOTHESES, REFERENCES).score


def test_chinese_tokenizer_is_passed_to_sacrebleu():
    hypotheses, references = ["我喜欢吃苹果"], ["我喜欢吃香蕉"]
    chinese = corpus_bleu(hypotheses, references, tokenize="zh")
    assert "tok:zh" in chinese.signature
    assert chinese.score > 0  # characters are tokens, so most of them match ...
    assert corpus_bleu(hypotheses, references).score == 0.0  # ... while 13a sees one unmatched word


def test_mismatched_number_of_references_is_named():
    with pytest.raises(
        ValueError, match=r"^references stream 0 has 1 sentences but hypotheses has 2; each stream needs one reference"
    ):
        corpus_bleu(HYPOTHESES, REFERENCES[:1])


def test_mismatched_second_stream_is_named():
    with pytest.raises(ValueError, match=r"^references stream 1 has 3 sentences but hypotheses has 2"):
        corpus_bleu(HYPOTHESES, [REFERENCES, [*REFERENCES, "extra"]])


def test_empty_hypotheses_are_refused():
    with pytest.raises(ValueError, match=r"^hypotheses is empty; expected at least one item$"):
        corpus_bleu([], [])


def test_a_single_string_hypothesis_is_refused():
    with pytest.raises(TypeError, match=r"^hypotheses must be a list of sentences, got a single str$"):
        corpus_bleu("the cat sat", ["the cat sat"])


def test_empty_references_are_refused_with_a_clear_error():
    with pytest.raises(ValueError, match=r"references"):
        corpus_bleu(["a b"], [])


@pytest.mark.parametrize("sentence", ["x", "the cat"])
def test_a_single_string_reference_is_refused(sentence):
    with pytest.raises(TypeError, match=r"references"):
        corpus_bleu([sentence], sentence)


def test_unknown_tokenizer_is_a_clear_error():
    with pytest.raises(ValueError, match=r"tokenize"):
        corpus_bleu(["a"], ["a"], tokenize="nope")
