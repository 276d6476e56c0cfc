"""GPT: the KV cache is its generation state, so reading one token at a time equals one full pass, and generating
with and without the cache gives the same tokens and logits through the Part I decoders; positions past the table
raise the named error; no position sees a later one. BERT: every position sees both sides but never padding, it
agrees with d2l's BERT encoder, and BERT's masking rule keeps its proportions while its loss reads only the chosen
positions."""

import math

import pytest
import torch
from d2l import torch as d2l
from hypothesis import given
from hypothesis import strategies as st

from companion.decoding import decode, sample
from companion.language_models import next_token_loss
from companion.positions import PositionTableError
from companion.pretraining import (
    BERT,
    GPT,
    IGNORE_INDEX,
    GPTState,
    LanguageModelConfig,
    MaskedTokens,
    mask_tokens,
    masked_lm_loss,
    masked_token_loss,
)
from companion.transformer import NoCache, TransformerEncoderLayer, set_fused

TOL = {"atol": 1e-5, "rtol": 1e-5}
V = 17


def config(**changes) -> LanguageModelConfig:
    return LanguageModelConfig(
        **({"vocab_size": V, "d_model": 16, "nhead": 2, "num_layers": 2, "max_length": 32} | changes)
    )


def gpt(seed: int = 0, **changes) -> GPT:
    torch.manual_seed(seed)
    return GPT(config(**changes)).eval()


def greedy(logits: torch.Tensor) -> torch.Tensor:
    return logits.argmax(-1)


# ---------------------------------------------------------------- GPT


def test_config_defaults_are_gpts_and_fields_are_checked():
    c = config()
    assert (c.activation, c.positions, c.norm_first, c.dim_feedforward) == ("gelu", "learned", True, 64)
    with pytest.raises(ValueError, match="vocab_size must be a positive int"):
        LanguageModelConfig(vocab_size=0)
    with pytest.raises(ValueError, match="num_layers must be a positive int"):
        config(num_layers=0)
    with pytest.raises(TypeError, match="LanguageModelConfig"):
        GPT(object())


@given(st.lists(st.integers(1, 4), min_size=1, max_size=5), st.booleans())
def test_reading_in_pieces_through_the_cache_equals_one_full_pass(pieces, fused):
    model = set_fused(gpt(), fused)
    ids = torch.randint(V, (2, sum(pieces)), generator=torch.Generator().manual_seed(len(pieces)))
    full, state = model(ids)
    assert state.length == ids.shape[1]
    outputs, state, start = [], None, 0
    for size in pieces:
        logits, state = model(ids[:, start : start + size], state)
        outputs.append(logits)
        start += size
    torch.testing.assert_close(torch.cat(outputs, dim=1), full, **TOL)
    assert state.length == ids.shape[1]
    assert state.caches[1].keys.shape == (2, 2, ids.shape[1], 8)


def test_generation_with_and_without_the_cache_gives_the_same_tokens_and_logits():
    model = gpt(seed=1)
    prompt = torch.randint(V, (3, 4), generator=torch.Generator().manual_seed(1))
    cached = decode(model, prompt, 20, greedy)
    recomputed = decode(NoCache(model), prompt, 20, greedy)
    assert torch.equal(cached, recomputed)
    assert cached.shape == (3, 24)
    # the logits along the generated text: one pass, and the cached and recomputed steps, agree
    with torch.no_grad():
        full, _ = model(cached[:, :-1])
        steps, state = [], None
        for t in range(cached.shape[1] - 1):
            logits, state = model(cached[:, t : t + 1], state)
            steps.append(logits)
        recomputed_steps, prefix = [], None
        wrapper = NoCache(model)
        for t in range(cached.shape[1] - 1):
            logits, prefix = wrapper(cached[:, t : t + 1], prefix)
            recomputed_steps.append(logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, **TOL)
    torch.testing.assert_close(torch.cat(recomputed_steps, dim=1), full, **TOL)
    # sampling too, with the same seeded generator
    drawn = sample(model, prompt[0], 15, generator=torch.Generator().manual_seed(2))
    drawn_again = sample(NoCache(model), prompt[0], 15, generator=torch.Generator().manual_seed(2))
    assert torch.equal(drawn, drawn_again)


def test_generation_past_the_position_table_raises_the_named_error():
    model = gpt()
    prompt = torch.randint(V, (1, 30))
    assert decode(model, prompt, 2, greedy).shape == (1, 32)  # the 32nd token is picked, never read
    # the decoder refuses up front (companion.decoding checks the model's max_length) ...
    with pytest.raises(ValueError, match="max_length"):
        decode(model, prompt, 3, greedy)
    # ... and the model itself, read past its table, names the positions asked for
    state = model(prompt)[1]
    with pytest.raises(PositionTableError, match=r"positions 30 \.\. 32"):
        model(torch.randint(V, (1, 3)), state)
    with pytest.raises(PositionTableError, match="max_length=32"):
        model(torch.randint(V, (1, 33)))


@given(st.integers(0, 9), st.integers(0, 2**16), st.booleans())
def test_a_change_at_position_t_never_changes_the_outputs_before_t(t, seed, norm_first):
    model = gpt(seed=2, norm_first=norm_first)
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(V, (2, 10), generator=generator)
    changed = ids.clone()
    changed[:, t] = (ids[:, t] + 1 + torch.randint(V - 1, (2,), generator=generator)) % V
    before, _ = model(ids)
    after, _ = model(changed)
    torch.testing.assert_close(after[:, :t], before[:, :t], **TOL)
    assert not torch.allclose(after[:, t], before[:, t])


def test_reorder_state_picks_sequences_for_beam_search():
    model = gpt()
    ids = torch.randint(V, (3, 6))
    _, state = model(ids[:, :5])
    indices = torch.tensor([1, 1, 2])
    logits, _ = model(ids[indices, 5:], model.reorder_state(state, indices))
    expected, _ = model(ids[indices])
    torch.testing.assert_close(logits, expected[:, 5:], **TOL)
    with pytest.raises(TypeError, match="GPTState"):
        model.reorder_state(state.caches, indices)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        model.reorder_state(state, torch.tensor([-1]))


def test_gpt_trains_with_the_part_one_loss_and_starts_near_uniform():
    model = gpt(seed=3).train()
    inputs = torch.randint(V, (4, 12))
    loss = next_token_loss(model, (inputs, torch.roll(inputs, -1, 1)))
    # GPT-2's small initialisation: the untrained model is close to uniform, perplexity near V
    assert abs(math.exp(loss.item()) - V) / V < 0.05
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    assert model.head.weight is model.token_embedding.weight
    residual = model.encoder.layers[0].linear2.weight
    assert 0.5 < residual.std().item() / (0.02 / math.sqrt(4)) < 1.5


def test_gpt_blocks_are_pre_ln_encoder_layers_and_errors_are_clear():
    model = gpt()
    assert all(isinstance(layer, TransformerEncoderLayer) and layer.norm_first for layer in model.encoder.layers)
    assert model.encoder.norm is not None, "a pre-LN stack ends with a LayerNorm"
    _, state = model(torch.randint(V, (2, 3)))
    assert isinstance(state, GPTState)
    with pytest.raises(ValueError, match=r"ids has size 3 in dimension 0.*the state's batch"):
        model(torch.randint(V, (3, 1)), state)
    with pytest.raises(TypeError, match="GPTState"):
        model(torch.randint(V, (2, 1)), state.caches)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model(torch.tensor([[V]]))


# ---------------------------------------------------------------- BERT


def bert(seed: int = 0, **changes) -> BERT:
    torch.manual_seed(seed)
    return BERT(config(**changes)).eval()


def test_bert_reads_both_sides_but_never_padding():
    model = bert()
    ids, lengths = torch.randint(V, (2, 8)), torch.tensor([8, 5])
    logits = model(ids, lengths)
    assert logits.shape == (2, 8, V)
    later = ids.clone()
    later[:, 4] = (ids[:, 4] + 1) % V
    assert not torch.allclose(model(later, lengths)[:, :4], logits[:, :4]), "an earlier position sees a later one"
    junk = ids.clone()
    junk[1, 5:] = (ids[1, 5:] + 3) % V
    torch.testing.assert_close(model(junk, lengths)[:, :5], logits[:, :5], **TOL)
    torch.testing.assert_close(model(junk, lengths)[0], logits[0], **TOL)
    torch.testing.assert_close(model(ids[1:, :5])[0], logits[1, :5], **TOL)
    assert model.features(ids, lengths).shape == (2, 8, 16)


def test_bert_agrees_with_d2ls_bert_encoder():
    torch.manual_seed(4)
    max_len, E, heads, ff = 32, 16, 2, 24
    theirs = d2l.BERTEncoder(V, E, ff, heads, num_blks=2, dropout=0.0, max_len=max_len).eval()
    ids, lengths = torch.randint(V, (2, 9)), torch.tensor([9, 4])
    segments = torch.zeros_like(ids)
    with torch.no_grad():
        theirs(ids, segments, lengths)  # size the lazy layers
        theirs.segment_embedding.weight.zero_()  # one segment: nothing to add
    expected = theirs(ids, segments, lengths)
    # d2l's blocks are post-LN, with ReLU and biases in the attention
    ours = BERT(config(d_model=E, dim_feedforward=ff, max_length=max_len, norm_first=False, activation="relu")).eval()
    with torch.no_grad():
        ours.token_embedding.weight.copy_(theirs.token_embedding.weight)
        ours.positions.embedding.weight.copy_(theirs.pos_embedding[0])
        for layer, block in zip(ours.encoder.layers, theirs.blks, strict=True):
            attention = block.attention
            layer.self_attn.in_proj_weight.copy_(
                torch.cat([attention.W_q.weight, attention.W_k.weight, attention.W_v.weight])
            )
            layer.self_attn.in_proj_bias.copy_(torch.cat([attention.W_q.bias, attention.W_k.bias, attention.W_v.bias]))
            layer.self_attn.out_proj.load_state_dict(attention.W_o.state_dict())
            layer.linear1.load_state_dict(block.ffn.dense1.state_dict())
            layer.linear2.load_state_dict(block.ffn.dense2.state_dict())
            layer.norm1.load_state_dict(block.addnorm1.ln.state_dict())
            layer.norm2.load_state_dict(block.addnorm2.ln.state_dict())
    assert ours.encoder.norm is None, "post-LN: no final norm, as d2l"
    features = ours.features(ids, lengths)
    real = torch.arange(9)[None] < lengths[:, None]
    torch.testing.assert_close(features[real], expected[real], **TOL)


# ---------------------------------------------------------------- BERT's masking rule and its loss


def test_masking_rule_keeps_bert_proportions():
    generator = torch.Generator().manual_seed(5)
    ids = torch.randint(3, V - 1, (256, 200), generator=generator)  # 13 token values
    lengths = torch.randint(100, 201, (256,), generator=generator)
    mask_id = V - 1
    batch = mask_tokens(ids, mask_id, V, lengths=lengths, special_ids=(0, 1), generator=generator)
    chosen = batch.chosen
    real = torch.arange(200)[None] < lengths[:, None]
    # exactly round(15 % of each sequence's real positions), never padding
    assert chosen.sum(1).tolist() == [max(1, round(0.15 * n)) for n in lengths.tolist()]
    assert not (chosen & ~real).any()
    assert torch.equal(batch.inputs[~chosen], ids[~chosen]), "positions not chosen are left alone"
    assert torch.equal(batch.labels[chosen], ids[chosen])
    assert (batch.labels[~chosen] == IGNORE_INDEX).all()
    masked = (batch.inputs == mask_id) & chosen
    kept = (batch.inputs == ids) & chosen
    replaced = chosen & ~masked & ~kept
    total = chosen.sum().item()
    shares = {
        name: part.sum().item() / total for name, part in (("mask", masked), ("keep", kept), ("random", replaced))
    }
    # A random draw comes from the 14 ids left once <pad>, <unk> and [MASK] are excluded; one time in 14 it is the
    # original token and counts as kept. Each share within 4 standard deviations of what the rule gives.
    expected = {"mask": 0.8, "keep": 0.1 + 0.1 / 14, "random": 0.1 * 13 / 14}
    for name, share in expected.items():
        spread = 4 * math.sqrt(share * (1 - share) / total)
        assert abs(shares[name] - share) < spread, (name, shares[name], share, spread)
    assert total > 5000
    assert not torch.isin(batch.inputs[replaced], torch.tensor([0, 1, mask_id])).any()


@given(st.lists(st.integers(1, 12), min_size=1, max_size=6), st.integers(0, 2**16))
def test_masking_never_chooses_padding_or_unmaskable_positions(lengths, seed):
    lengths = torch.tensor(lengths)
    ids = torch.randint(2, V, (len(lengths), 12))
    maskable = torch.ones_like(ids, dtype=torch.bool)
    maskable[:, 0] = False  # a start token
    batch = mask_tokens(ids, 1, V, lengths=lengths, maskable=maskable, generator=torch.Generator().manual_seed(seed))
    real = torch.arange(12)[None] < lengths[:, None]
    assert not (batch.chosen & ~(real & maskable)).any()
    candidates = (real & maskable).sum(1)
    expected = torch.tensor([max(1, round(0.15 * n)) if n else 0 for n in candidates.tolist()])
    assert torch.equal(batch.chosen.sum(1), expected)


def test_masking_is_reproducible_and_checks_its_arguments():
    ids = torch.randint(V - 1, (4, 20))
    first = mask_tokens(ids, V - 1, V, generator=torch.Generator().manual_seed(6))
    second = mask_tokens(ids, V - 1, V, generator=torch.Generator().manual_seed(6))
    assert torch.equal(first.inputs, second.inputs)
    assert torch.equal(first.labels, second.labels)
    with pytest.raises(ValueError, match="rate"):
        mask_tokens(ids, V - 1, V, rate=0.0)
    with pytest.raises(ValueError, match="mask_id"):
        mask_tokens(ids, V, V)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        mask_tokens(ids + V, 0, V)
    with pytest.raises(ValueError, match="maskable must be bool"):
        mask_tokens(ids, V - 1, V, maskable=torch.ones(4, 20))


def test_the_loss_reads_only_the_chosen_positions():
    torch.manual_seed(7)
    ids = torch.randint(V - 1, (3, 10))
    batch = mask_tokens(ids, V - 1, V, generator=torch.Generator().manual_seed(7))
    logits = torch.randn(3, 10, V, requires_grad=True)
    loss = masked_token_loss(logits, batch.labels)
    chosen = batch.chosen
    expected = torch.nn.functional.cross_entropy(logits[chosen], ids[chosen])
    torch.testing.assert_close(loss, expected)
    (grad,) = torch.autograd.grad(loss, logits)
    assert (grad[~chosen] == 0).all()
    assert (grad[chosen] != 0).any(dim=-1).all()
    other = logits.detach().clone()
    other[~chosen] = torch.randn_like(other[~chosen]) * 10
    torch.testing.assert_close(masked_token_loss(other, batch.labels), loss.detach())
    with pytest.raises(ValueError, match="choose no position"):
        masked_token_loss(logits, torch.full((3, 10), IGNORE_INDEX))
    with pytest.raises(ValueError, match="disagree"):
        masked_token_loss(logits, batch.labels[:, :5])


def test_masked_lm_loss_is_a_trainer_loss_and_a_few_steps_lower_it():
    torch.manual_seed(8)
    model = BERT(config(vocab_size=V, norm_first=False)).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(8)
    # sequences that repeat one token: a masked position is easy to fill from its neighbours
    losses = []
    for _ in range(60):
        ids = torch.randint(2, V - 1, (16, 1), generator=generator).expand(16, 12)
        batch = mask_tokens(ids, V - 1, V, lengths=torch.full((16,), 12), special_ids=(0, 1), generator=generator)
        assert isinstance(batch, MaskedTokens)
        loss = masked_lm_loss(model, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) < 0.5 * sum(losses[:5])
