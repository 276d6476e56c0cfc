"""The Transformer's layers agree with torch.nn's (both norm placements, padded and causal inputs, gradients) and with
d2l's; the encoder-decoder follows the generation interface (teacher forcing in one call equals one token at a time
through the KV cache, reorder_state follows beams, NoCache recomputes the same tokens); padding never changes real
outputs and no position sees a later one; bad input gets a clear error."""

import math

import pytest
import torch
import torch.nn.functional as F
from d2l import torch as d2l
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from companion.masks import causal_mask, combine_masks, padding_mask, to_attn_mask, to_key_padding_mask
from companion.positions import PositionTableError
from companion.transformer import (
    BlockConfig,
    DecoderLayerState,
    FeedForward,
    KVCache,
    NoCache,
    Transformer,
    TransformerConfig,
    TransformerDecoder,
    TransformerDecoderLayer,
    TransformerEncoder,
    TransformerEncoderLayer,
    TransformerState,
    feed_forward,
    layer_gradient_norms,
    set_fused,
    warmup_schedule,
)

TOL = {"atol": 1e-5, "rtol": 1e-5}
LENGTHS = torch.tensor([6, 3, 1])  # three padded sequences of up to 6 positions
E, HEADS, FF = 8, 2, 16


def mask_cases(time: int = 6) -> dict[str, torch.Tensor | None]:
    pad = padding_mask(LENGTHS, time)
    return {
        "none": None,
        "padded": pad,
        "causal": causal_mask(time),
        "padded and causal": combine_masks(pad, causal_mask(time)),
    }


def torch_masks(mask_name: str, time: int = 6) -> dict[str, torch.Tensor]:
    """The same masks in torch.nn's convention (True = ignore), as torch's layers take them."""
    masks = {}
    if "padded" in mask_name:
        masks["src_key_padding_mask"] = to_key_padding_mask(padding_mask(LENGTHS, time))
    if "causal" in mask_name:
        masks["src_mask"] = to_attn_mask(causal_mask(time))
    return masks


def randomised(module: nn.Module) -> nn.Module:
    """Non-zero biases and LayerNorm weights too, so that a swapped or skipped parameter shows."""
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(0.3 * torch.randn_like(parameter))
    return module.train()  # dropout is 0; train mode keeps torch off its fused inference path


def assert_same_gradients(ours: nn.Module, theirs: nn.Module, inputs: list[torch.Tensor], ours_out, theirs_out):
    weight = torch.randn_like(theirs_out)
    ours_grads = torch.autograd.grad((ours_out * weight).sum(), [*inputs[0], *ours.parameters()])
    theirs_grads = torch.autograd.grad((theirs_out * weight).sum(), [*inputs[1], *theirs.parameters()])
    names = [f"input {i}" for i in range(len(inputs[0]))] + [name for name, _ in ours.named_parameters()]
    assert [name for name, _ in ours.named_parameters()] == [name for name, _ in theirs.named_parameters()]
    for name, grad, expected in zip(names, ours_grads, theirs_grads, strict=True):
        torch.testing.assert_close(grad, expected, **TOL, msg=name)


# ---------------------------------------------------------------- configuration


def test_config_fills_in_the_feed_forward_width_and_checks_every_field():
    config = TransformerConfig(source_vocab_size=10, target_vocab_size=12, d_model=32)
    assert config.dim_feedforward == 128
    assert config.layer_arguments["norm_first"] is True
    with pytest.raises(ValueError, match="divisible by nhead"):
        BlockConfig(d_model=10, nhead=4)
    with pytest.raises(ValueError, match="dropout"):
        BlockConfig(dropout=1.0)
    with pytest.raises(ValueError, match="activation"):
        BlockConfig(activation="tanh")
    with pytest.raises(ValueError, match="positions"):
        BlockConfig(positions="rotary")
    with pytest.raises(ValueError, match="even d_model"):
        BlockConfig(d_model=9, nhead=3)
    with pytest.raises(ValueError, match="source_vocab_size must be a positive int"):
        TransformerConfig(source_vocab_size=0, target_vocab_size=12)
    with pytest.raises(TypeError):
        TransformerConfig(10, 12)  # keyword-only: a config reads as its names
    with pytest.raises(AttributeError):
        config.d_model = 64  # frozen


# ---------------------------------------------------------------- the feed-forward block


def test_feed_forward_is_its_formula_position_by_position():
    torch.manual_seed(0)
    block = FeedForward(E, FF, activation="gelu")
    x = torch.randn(2, 5, E)
    expected = F.gelu(x @ block.linear1.weight.T + block.linear1.bias) @ block.linear2.weight.T + block.linear2.bias
    torch.testing.assert_close(block(x), expected, **TOL)
    # position-wise: each position alone gives the same answer as in the batch
    torch.testing.assert_close(block(x[:, 3:4]), block(x)[:, 3:4], **TOL)
    layer = TransformerEncoderLayer(E, HEADS, FF, dropout=0.0)
    layer.linear1, layer.linear2 = block.linear1, block.linear2
    torch.testing.assert_close(feed_forward(x, layer.linear1, layer.linear2, F.gelu, nn.Identity()), block(x))
    with pytest.raises(ValueError, match="d_model"):
        block(torch.randn(2, 5, E + 1))


def test_feed_forward_agrees_with_d2l():
    torch.manual_seed(1)
    theirs = d2l.PositionWiseFFN(FF, E)
    x = torch.randn(3, 4, E)
    expected = theirs(x)  # the first call sizes its lazy layers
    ours = FeedForward(E, FF)
    with torch.no_grad():
        for mine, their in ((ours.linear1, theirs.dense1), (ours.linear2, theirs.dense2)):
            mine.weight.copy_(their.weight)
            mine.bias.copy_(their.bias)
    torch.testing.assert_close(ours(x), expected, **TOL)


# ---------------------------------------------------------------- layers against torch.nn


@pytest.mark.parametrize("norm_first", [False, True], ids=["post-LN", "pre-LN"])
@pytest.mark.parametrize("mask_name", list(mask_cases()))
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "scratch"])
def test_encoder_layer_agrees_with_torch_outputs_and_gradients(norm_first, mask_name, fused):
    torch.manual_seed(2)
    theirs = randomised(
        nn.TransformerEncoderLayer(
            E, HEADS, FF, dropout=0.0, batch_first=True, norm_first=norm_first, activation="gelu"
        )
    )
    ours = TransformerEncoderLayer.from_torch(theirs)
    ours.fused = fused
    x = torch.randn(3, 6, E, requires_grad=True)
    x_theirs = x.detach().clone().requires_grad_(True)
    out, cache = ours(x, mask_cases()[mask_name])
    expected = theirs(x_theirs, **torch_masks(mask_name))
    torch.testing.assert_close(out, expected, **TOL)
    assert cache.keys.shape == cache.values.shape == (3, HEADS, 6, E // HEADS)
    assert_same_gradients(ours, theirs, [[x], [x_theirs]], out, expected)


@pytest.mark.parametrize("norm_first", [False, True], ids=["post-LN", "pre-LN"])
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "scratch"])
def test_decoder_layer_agrees_with_torch_on_a_causal_target_and_a_padded_memory(norm_first, fused):
    torch.manual_seed(3)
    theirs = randomised(nn.TransformerDecoderLayer(E, HEADS, FF, dropout=0.0, batch_first=True, norm_first=norm_first))
    ours = TransformerDecoderLayer.from_torch(theirs)
    ours.fused = fused
    tgt, memory = torch.randn(3, 5, E, requires_grad=True), torch.randn(3, 6, E, requires_grad=True)
    tgt_theirs, memory_theirs = (t.detach().clone().requires_grad_(True) for t in (tgt, memory))
    out, state = ours(tgt, memory, causal_mask(5), padding_mask(LENGTHS, 6))
    expected = theirs(
        tgt_theirs,
        memory_theirs,
        tgt_mask=to_attn_mask(causal_mask(5)),
        memory_key_padding_mask=to_key_padding_mask(padding_mask(LENGTHS, 6)),
    )
    torch.testing.assert_close(out, expected, **TOL)
    assert state.length == 5
    assert (state.weights is None) == fused
    assert_same_gradients(ours, theirs, [[tgt, memory], [tgt_theirs, memory_theirs]], out, expected)


@pytest.mark.parametrize("norm_first", [False, True], ids=["post-LN", "pre-LN"])
def test_stacks_agree_with_torch_final_norm_included(norm_first):
    torch.manual_seed(4)
    norm = nn.LayerNorm(E) if norm_first else None
    layer = nn.TransformerEncoderLayer(E, HEADS, FF, dropout=0.0, batch_first=True, norm_first=norm_first)
    theirs = randomised(nn.TransformerEncoder(layer, 3, norm=norm, enable_nested_tensor=False))
    ours = TransformerEncoder.from_torch(theirs)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    x, mask = torch.randn(3, 6, E), padding_mask(LENGTHS, 6)
    memory, caches = ours(x, mask)
    torch.testing.assert_close(memory, theirs(x, src_key_padding_mask=to_key_padding_mask(mask)), **TOL)
    assert len(caches) == 3

    decoder_layer = nn.TransformerDecoderLayer(E, HEADS, FF, dropout=0.0, batch_first=True, norm_first=norm_first)
    theirs_decoder = randomised(nn.TransformerDecoder(decoder_layer, 2, norm=nn.LayerNorm(E) if norm_first else None))
    ours_decoder = TransformerDecoder.from_torch(theirs_decoder)
    tgt = torch.randn(3, 4, E)
    out, states = ours_decoder(tgt, memory, causal_mask(4), mask)
    expected = theirs_decoder(
        tgt,
        memory,
        tgt_mask=to_attn_mask(causal_mask(4)),
        memory_key_padding_mask=to_key_padding_mask(mask),
    )
    torch.testing.assert_close(out, expected, **TOL)
    assert [state.length for state in states] == [4, 4]


@given(st.lists(st.integers(1, 7), min_size=1, max_size=4), st.booleans(), st.booleans(), st.integers(0, 2**16))
def test_a_layer_never_reads_padding(lengths, norm_first, fused, seed):
    torch.manual_seed(seed)
    layer = TransformerEncoderLayer(E, HEADS, FF, dropout=0.0, norm_first=norm_first, fused=fused)
    lengths = torch.tensor(lengths)
    x = torch.randn(len(lengths), 7, E)
    real = torch.arange(7)[None, :, None] < lengths[:, None, None]  # (B, 7, 1)
    junk = torch.where(real, x, 100 * torch.randn_like(x))
    mask = padding_mask(lengths, 7)
    out, _ = layer(x, mask)
    again, _ = layer(junk, mask)
    torch.testing.assert_close(again[real.expand_as(x)], out[real.expand_as(x)], **TOL)


@pytest.mark.parametrize("kind", ["encoder", "decoder"])
def test_parameter_names_and_initialisation_are_torchs(kind):
    ours_class, theirs_class = {
        "encoder": (TransformerEncoderLayer, nn.TransformerEncoderLayer),
        "decoder": (TransformerDecoderLayer, nn.TransformerDecoderLayer),
    }[kind]
    torch.manual_seed(5)
    ours = ours_class(E, HEADS, FF)
    torch.manual_seed(5)
    theirs = theirs_class(E, HEADS, FF, batch_first=True)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    for name, value in theirs.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[name], value, msg=name)


def test_from_torch_copies_dtype_and_biasless_layers_and_refuses_what_it_cannot_copy():
    theirs = nn.TransformerDecoderLayer(E, HEADS, FF, dropout=0.0, bias=False, norm_first=True).double()
    ours = TransformerDecoderLayer.from_torch(theirs)
    assert ours.linear1.bias is None
    assert ours.norm1.bias is None
    assert ours.self_attn.in_proj_weight.dtype == torch.float64
    tgt, memory = torch.randn(2, 3, E, dtype=torch.float64), torch.randn(2, 4, E, dtype=torch.float64)
    expected = theirs(tgt.transpose(0, 1), memory.transpose(0, 1)).transpose(0, 1)  # a sequence-first twin
    torch.testing.assert_close(ours(tgt, memory)[0], expected)
    with pytest.raises(TypeError, match=r"torch\.nn\.TransformerEncoderLayer"):
        TransformerEncoderLayer.from_torch(theirs)
    with pytest.raises(ValueError, match="relu and gelu"):
        TransformerEncoderLayer.from_torch(nn.TransformerEncoderLayer(E, HEADS, FF, activation=torch.tanh))
    with pytest.raises(TypeError, match="TransformerEncoderLayer"):
        TransformerEncoder(nn.TransformerEncoderLayer(E, HEADS, FF), 2)


# ---------------------------------------------------------------- d2l's Transformer pieces


def load_d2l_block(ours: TransformerEncoderLayer, theirs: nn.Module) -> None:
    """d2l's encoder block into ours: W_q, W_k, W_v side by side are in_proj_weight; addnorm1/2 are norm1/2."""
    attention = theirs.attention
    with torch.no_grad():
        ours.self_attn.in_proj_weight.copy_(
            torch.cat([attention.W_q.weight, attention.W_k.weight, attention.W_v.weight])
        )
        ours.self_attn.out_proj.weight.copy_(attention.W_o.weight)
        if attention.W_q.bias is not None:
            ours.self_attn.in_proj_bias.copy_(torch.cat([attention.W_q.bias, attention.W_k.bias, attention.W_v.bias]))
            ours.self_attn.out_proj.bias.copy_(attention.W_o.bias)
        else:  # d2l's attention has no biases by default: ours are set to zero
            ours.self_attn.in_proj_bias.zero_()
            ours.self_attn.out_proj.bias.zero_()
        for mine, their in ((ours.linear1, theirs.ffn.dense1), (ours.linear2, theirs.ffn.dense2)):
            mine.load_state_dict(their.state_dict())
        ours.norm1.load_state_dict(theirs.addnorm1.ln.state_dict())
        ours.norm2.load_state_dict(theirs.addnorm2.ln.state_dict())


def test_post_ln_encoder_layer_agrees_with_d2ls_transformer_encoder_block():
    torch.manual_seed(6)
    theirs = d2l.TransformerEncoderBlock(E, FF, HEADS, dropout=0.0).eval()
    x = torch.randn(3, 6, E)
    expected = theirs(x, LENGTHS)
    ours = TransformerEncoderLayer(E, HEADS, FF, dropout=0.0, norm_first=False)
    load_d2l_block(ours, theirs)
    torch.testing.assert_close(ours(x, padding_mask(LENGTHS, 6))[0], expected, **TOL)


def test_the_encoder_side_agrees_with_d2ls_transformer_encoder():
    torch.manual_seed(7)
    vocab, blocks = 20, 2
    theirs = d2l.TransformerEncoder(vocab, E, FF, HEADS, blocks, dropout=0.0).eval()
    source = torch.randint(vocab, (3, 6))
    expected = theirs(source, LENGTHS)
    config = TransformerConfig(
        source_vocab_size=vocab,
        target_vocab_size=5,
        d_model=E,
        nhead=HEADS,
        dim_feedforward=FF,
        num_encoder_layers=blocks,
        norm_first=False,  # d2l's blocks are post-LN, with no final norm
        max_length=1000,  # d2l's table
    )
    ours = Transformer(config).eval()
    ours.source_embedding.load_state_dict(theirs.embedding.state_dict())
    for layer, block in zip(ours.encoder.layers, theirs.blks, strict=True):
        load_d2l_block(layer, block)
    state = ours.encode(source, LENGTHS)
    torch.testing.assert_close(state.memory, expected, **TOL)


# ---------------------------------------------------------------- the encoder-decoder model


def small_config(**changes) -> TransformerConfig:
    settings = {
        "source_vocab_size": 13,
        "target_vocab_size": 11,
        "d_model": 16,
        "nhead": 2,
        "num_encoder_layers": 2,
        "num_decoder_layers": 2,
        "max_length": 24,
    } | changes
    return TransformerConfig(**settings)


def small_model(seed: int = 0, **changes) -> Transformer:
    torch.manual_seed(seed)
    return Transformer(small_config(**changes)).eval()


def source_batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(13, (3, 6), generator=generator), LENGTHS.clone()


@pytest.mark.parametrize("norm_first", [False, True], ids=["post-LN", "pre-LN"])
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "scratch"])
def test_teacher_forcing_in_one_call_equals_one_token_at_a_time_through_the_cache(norm_first, fused):
    model = set_fused(small_model(norm_first=norm_first), fused)
    source, lengths = source_batch()
    target = torch.randint(11, (3, 7))
    state = model.encode(source, lengths)
    full, after = model(target, state)
    assert full.shape == (3, 7, 11)
    assert after.length == 7
    assert state.length == 0, "a state is a value: the call returned a new one"
    steps, step_state = [], state
    for t in range(7):
        logits, step_state = model(target[:, t : t + 1], step_state)
        steps.append(logits)
        # the cache grows by one position per step; the memory's projection stays as encoded
        assert step_state.layers[0].cache.keys.shape == (3, 2, t + 1, 8)
        assert step_state.layers[0].memory is state.layers[0].memory
    torch.testing.assert_close(torch.cat(steps, dim=1), full, **TOL)
    first, middle = model(target[:, :3], state)
    rest, _ = model(target[:, 3:], middle)
    torch.testing.assert_close(torch.cat([first, rest], dim=1), full, **TOL)


@pytest.mark.filterwarnings("ignore:enable_nested_tensor is True")  # torch's note on its own pre-LN stacks
def test_the_model_is_embeddings_around_torchs_nn_transformer():
    model = small_model(norm_first=True)  # nn.Transformer always closes both stacks with a LayerNorm, as pre-LN does
    theirs = nn.Transformer(16, 2, 2, 2, model.config.dim_feedforward, dropout=0.0, batch_first=True, norm_first=True)
    theirs.encoder.load_state_dict(model.encoder.state_dict())
    theirs.decoder.load_state_dict(model.decoder.state_dict())
    source, lengths = source_batch()
    target = torch.randint(11, (3, 5))
    logits, _ = model(target, model.encode(source, lengths))
    padding = to_key_padding_mask(padding_mask(lengths, 6))
    hidden = theirs.train()(
        model._embed(source, model.source_embedding, model.source_positions, 0),
        model._embed(target, model.target_embedding, model.target_positions, 0),
        tgt_mask=to_attn_mask(causal_mask(5)),
        src_key_padding_mask=padding,
        memory_key_padding_mask=padding,
    )
    torch.testing.assert_close(logits, model.head(hidden), **TOL)


def test_fused_and_scratch_give_the_same_logits_and_only_scratch_gives_cross_attention_weights():
    model = small_model()
    source, lengths = source_batch()
    target = torch.randint(11, (3, 5))
    fused_logits, fused_state = model(target, model.encode(source, lengths))
    assert fused_state.weights is None
    scratch_logits, scratch_state = set_fused(model, False)(target, model.encode(source, lengths))
    torch.testing.assert_close(scratch_logits, fused_logits, **TOL)
    weights = scratch_state.weights
    assert len(weights) == 2
    assert weights[-1].shape == (3, 2, 5, 6)
    torch.testing.assert_close(weights[-1].sum(-1), torch.ones(3, 2, 5), **TOL)
    for b, length in enumerate(LENGTHS.tolist()):
        assert (weights[-1][b, ..., length:] == 0).all(), "no weight on source padding"
    assert all(not layer.fused for layer in model.modules() if isinstance(layer, TransformerDecoderLayer))
    with pytest.raises(TypeError, match="bool"):
        set_fused(model, 1)


def test_reorder_state_follows_beams_repeats_included():
    model = small_model()
    source, lengths = source_batch()
    target = torch.randint(11, (3, 4))
    _, state = model(target[:, :3], model.encode(source, lengths))
    indices = torch.tensor([2, 2, 0, 1])
    picked = model.reorder_state(state, indices)
    assert picked.batch_size == 4
    assert picked.length == 3
    logits, _ = model(target[indices, 3:], picked)
    # the same as reading the picked sources and prefixes from scratch
    expected, _ = model(target[indices], model.encode(source[indices], lengths[indices]))
    torch.testing.assert_close(logits, expected[:, 3:], **TOL)
    # every per-sequence tensor of the state is reordered along the batch
    assert torch.equal(picked.source_mask, state.source_mask[indices])
    torch.testing.assert_close(picked.memory, state.memory[indices])
    torch.testing.assert_close(picked.layers[1].memory.keys, state.layers[1].memory.keys[indices])
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 3\)"):
        model.reorder_state(state, torch.tensor([3]))
    with pytest.raises(TypeError, match="integers"):
        model.reorder_state(state, torch.tensor([0.0]))
    with pytest.raises(TypeError, match="TransformerState"):
        model.reorder_state((state,), indices)


def greedy_tokens(model: nn.Module, state, steps: int, start_id: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy decoding through the generation interface: tokens (B, steps) and each step's logits (B, steps, V)."""
    ids = torch.full((state.start.memory.shape[0] if hasattr(state, "start") else state.batch_size, 1), start_id)
    tokens, scores = [], []
    for _ in range(steps):
        logits, state = model(ids, state)
        ids = logits[:, -1:].argmax(-1)  # (B, 1)
        tokens.append(ids)
        scores.append(logits[:, -1:])
    return torch.cat(tokens, dim=1), torch.cat(scores, dim=1)


def test_generation_with_and_without_the_cache_gives_the_same_tokens_and_logits():
    model = small_model(seed=1)
    source, lengths = source_batch(1)
    with torch.no_grad():
        cached, cached_logits = greedy_tokens(model, model.encode(source, lengths), 10)
        no_cache = NoCache(model)
        recomputed, recomputed_logits = greedy_tokens(no_cache, no_cache.encode(source, lengths), 10)
    assert torch.equal(cached, recomputed)
    torch.testing.assert_close(cached_logits, recomputed_logits, **TOL)
    assert no_cache.vocab_size == 11
    assert no_cache.max_length == 24
    state = no_cache.reorder_state(
        no_cache(torch.full((3, 2), 2), no_cache.encode(source, lengths))[1], torch.tensor([1])
    )
    assert state.ids.shape == (1, 2)
    assert state.start.batch_size == 1


@given(st.data())
def test_padding_never_changes_the_real_positions_outputs(data):
    model = small_model(seed=2)
    lengths = torch.tensor(data.draw(st.lists(st.integers(1, 6), min_size=1, max_size=3)))
    batch, width = len(lengths), int(lengths.max())
    extra = data.draw(st.integers(0, 3))
    seed = data.draw(st.integers(0, 2**16))
    generator = torch.Generator().manual_seed(seed)
    source = torch.randint(13, (batch, width), generator=generator)
    target = torch.randint(11, (batch, 4), generator=generator)
    logits, _ = model(target, model.encode(source, lengths))
    # other ids at the padded positions, and more padding columns: the same logits
    junk = torch.randint(13, (batch, width + extra), generator=generator)
    real = torch.arange(width)[None, :] < lengths[:, None]
    padded = torch.where(torch.nn.functional.pad(real, (0, extra)), torch.nn.functional.pad(source, (0, extra)), junk)
    again, _ = model(target, model.encode(padded, lengths))
    torch.testing.assert_close(again, logits, **TOL)
    # a sequence alone gives what it gives in the batch
    alone, _ = model(target[:1], model.encode(source[:1, : int(lengths[0])], lengths[:1]))
    torch.testing.assert_close(alone, logits[:1], **TOL)


@given(st.integers(0, 5), st.integers(0, 2**16), st.booleans())
def test_a_change_at_position_t_never_changes_the_outputs_before_t(t, seed, norm_first):
    model = small_model(seed=3, norm_first=norm_first)
    generator = torch.Generator().manual_seed(seed)
    source, lengths = source_batch(seed)
    target = torch.randint(11, (3, 6), generator=generator)
    changed = target.clone()
    changed[:, t] = (target[:, t] + 1 + torch.randint(9, (3,), generator=generator)) % 11
    state = model.encode(source, lengths)
    before, _ = model(target, state)
    after, _ = model(changed, state)
    torch.testing.assert_close(after[:, :t], before[:, :t], **TOL)
    assert not torch.allclose(after[:, t:], before[:, t:]), "the changed position and later ones do see it"


def test_tied_embeddings_share_one_matrix_and_the_initialisation_is_scaled():
    model = small_model()
    assert model.head.weight is model.target_embedding.weight
    untied = small_model(tie_embeddings=False)
    assert untied.head.weight is not untied.target_embedding.weight
    count = sum(p.numel() for p in model.parameters())
    assert sum(p.numel() for p in untied.parameters()) - count == 11 * 16
    # sqrt(E) times the embeddings has entries of unit variance, the sinusoid's scale
    big = Transformer(small_config(source_vocab_size=4000))
    assert 0.9 < (big.source_embedding.weight * math.sqrt(16)).std().item() < 1.1


def test_a_few_steps_of_training_learn_to_copy():
    torch.manual_seed(4)
    model = Transformer(small_config(source_vocab_size=11, d_model=32, nhead=4)).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(4)
    losses = []
    for _ in range(60):
        body = torch.randint(3, 11, (32, 5), generator=generator)
        target = torch.cat([torch.full((32, 1), 2), body], dim=1)  # start token, then a copy of the source
        logits, _ = model(target[:, :-1], model.encode(body))
        loss = F.cross_entropy(logits.reshape(-1, 11), target[:, 1:].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) < 0.5 * sum(losses[:5])


def test_positions_past_the_table_raise_the_named_error():
    model = small_model()
    with pytest.raises(PositionTableError, match="max_length=24"):
        model.encode(torch.randint(13, (2, 25)))
    state = model.encode(torch.randint(13, (2, 5)))
    _, state = model(torch.randint(11, (2, 24)), state)
    with pytest.raises(PositionTableError, match=r"positions 24 \.\. 24"):
        model(torch.randint(11, (2, 1)), state)


def test_bad_input_gets_a_clear_error():
    model = small_model()
    source = torch.randint(13, (3, 6))
    with pytest.raises(ValueError, match=r"source must have 2 dimensions \(batch, source_time\)"):
        model.encode(source[0])
    with pytest.raises(TypeError, match="source must hold integers"):
        model.encode(source.float())
    with pytest.raises(ValueError, match=r"source holds ids \[13\] outside the vocabulary \[0, 13\)"):
        model.encode(torch.tensor([[1, 13]]))
    with pytest.raises(ValueError, match="lengths has size 2 in dimension 0"):
        model.encode(source, torch.tensor([6, 6]))
    with pytest.raises(ValueError, match=r"lengths must lie in \[1, 6\]"):
        model.encode(source, torch.tensor([6, 0, 7]))
    state = model.encode(source)
    with pytest.raises(TypeError, match=r"state must be the TransformerState from model\.encode"):
        model(torch.randint(11, (3, 2)), None)
    with pytest.raises(ValueError, match=r"ids has size 2 in dimension 0.*the state's batch"):
        model(torch.randint(11, (2, 2)), state)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model(torch.full((3, 1), 11), state)
    with pytest.raises(TypeError, match="config must be a TransformerConfig"):
        Transformer(BlockConfig())


def test_layers_check_their_inputs_and_states():
    layer = TransformerDecoderLayer(E, HEADS, FF, dropout=0.0)
    tgt, memory = torch.randn(2, 3, E), torch.randn(2, 4, E)
    with pytest.raises(ValueError, match="exactly one"):
        layer(tgt)
    _, state = layer(tgt, memory)
    with pytest.raises(ValueError, match="exactly one"):
        layer(tgt, memory, state=state)
    with pytest.raises(ValueError, match=r"tgt must have 3 dimensions \(batch, time, d_model\)"):
        layer(tgt[0], memory)
    with pytest.raises(ValueError, match=r"memory has size 5 in dimension 2.*d_model"):
        layer(tgt, torch.randn(2, 4, 5))
    with pytest.raises(ValueError, match=r"tgt has size 1 in dimension 0.*the cache's batch"):
        layer(tgt[:1], state=state)
    with pytest.raises(TypeError, match="DecoderLayerState"):
        layer(tgt, state=(state.cache, state.memory))
    encoder_layer = TransformerEncoderLayer(E, HEADS, FF)
    with pytest.raises(ValueError, match="does not broadcast"):
        # a 3-position causal mask for 3 new positions after 3 cached ones: it must be causal_mask(3, 6)
        encoder_layer(tgt, causal_mask(3), cache=encoder_layer(tgt)[1])
    with pytest.raises(ValueError, match="caches must hold one entry per layer"):
        TransformerEncoder(encoder_layer, 2)(tgt, caches=[None])


def test_kv_cache_extends_selects_and_checks_its_shapes():
    cache = KVCache(torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 5))
    longer = cache.extend(torch.randn(2, 3, 1, 5), torch.randn(2, 3, 1, 5))
    assert (longer.length, cache.length, longer.batch_size) == (5, 4, 2)
    torch.testing.assert_close(longer.keys[:, :, :4], cache.keys)
    assert longer.select(torch.tensor([1, 1, 0])).keys.shape == (3, 3, 5, 5)
    with pytest.raises(ValueError, match="values has size 3 in dimension 2"):
        KVCache(torch.randn(2, 3, 4, 5), torch.randn(2, 3, 3, 5))
    with pytest.raises(ValueError, match="keys must have 4 dimensions"):
        KVCache(torch.randn(2, 4, 5), torch.randn(2, 4, 5))
    state = DecoderLayerState(cache=None, memory=cache)
    assert state.length == 0
    assert state.select(torch.tensor([0])).memory.batch_size == 1


def test_state_is_a_transformer_state_with_one_entry_per_decoder_layer():
    model = small_model()
    state = model.encode(*source_batch())
    assert isinstance(state, TransformerState)
    assert len(state.layers) == 2
    assert state.layers[0].memory.keys.shape == (3, 2, 6, 8)
    assert state.weights is None
    assert state.source_mask.dtype == torch.bool
    assert state.source_mask.sum(1).tolist() == LENGTHS.tolist()


# ---------------------------------------------------------------- measurements and schedules


def test_layer_gradient_norms_are_the_norm_of_each_layers_gradients():
    torch.manual_seed(8)
    stack = TransformerEncoder(TransformerEncoderLayer(E, HEADS, FF, dropout=0.0), 3)
    out, _ = stack(torch.randn(2, 5, E))
    out.pow(2).sum().backward()
    norms = layer_gradient_norms(stack.layers)
    expected = [torch.cat([p.grad.flatten() for p in layer.parameters()]).norm().item() for layer in stack.layers]
    assert norms == pytest.approx(expected, rel=1e-5)
    assert layer_gradient_norms([nn.Linear(2, 2)]) == [0.0]


def test_warmup_schedule_rises_linearly_then_holds_or_follows_the_paper():
    parameter = nn.Parameter(torch.zeros(1))

    def rates(warmup, decay, steps=12, lr=1.0):
        optimizer = torch.optim.SGD([parameter], lr=lr)
        schedule = warmup_schedule(optimizer, warmup, decay)
        found = []
        for _ in range(steps):
            found.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            schedule.step()
        return found

    assert rates(4, "constant") == pytest.approx([0.25, 0.5, 0.75] + [1.0] * 9)
    assert rates(0, "constant") == pytest.approx([1.0] * 12)
    # the paper: lr = d^-0.5 min(n^-0.5, n warmup^-1.5), n = 1, 2, ...
    d_model, warmup = 512, 4
    paper = [d_model**-0.5 * min(n**-0.5, n * warmup**-1.5) for n in range(1, 13)]
    assert rates(warmup, "inverse_sqrt", lr=d_model**-0.5 * warmup**-0.5) == pytest.approx(paper)
    with pytest.raises(ValueError, match="warmup_steps"):
        warmup_schedule(torch.optim.SGD([parameter], lr=1.0), -1)
    with pytest.raises(ValueError, match="decay"):
        warmup_schedule(torch.optim.SGD([parameter], lr=1.0), 4, "cosine")


def test_chapter_6s_decoders_run_on_the_transformer_and_a_beam_of_one_is_greedy():
    from companion.decoding import beam_search, greedy

    torch.manual_seed(0)
    config = TransformerConfig(source_vocab_size=11, target_vocab_size=9, d_model=16, nhead=2, max_length=32)
    model = Transformer(config).eval()
    source, lengths = torch.randint(3, 11, (3, 6)), torch.tensor([6, 4, 2])
    prompt = torch.full((3, 1), 1)
    with torch.no_grad():
        state = model.encode(source, lengths)
        found = greedy(model, prompt, 12, end_id=2, state=state)
        beam = beam_search(model, prompt, 12, end_id=2, beam_size=1, state=state)
        wide = beam_search(model, prompt, 12, end_id=2, beam_size=4, state=state)
    assert torch.equal(beam.best, found.best)
    assert wide.ids.shape[:2] == (3, 4)
    assert (wide.scores[:, :-1] >= wide.scores[:, 1:]).all(), "each input's beams come best first"
