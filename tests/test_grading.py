"""The whole instructor cycle for every exercise, and the submissions that try to decide their own grade.

One module-scoped build (``otter assign`` on every master) and one grading run over a folder of submissions made
from it: for every exercise the solution, the untouched student version and its plausible wrong answers; on chapter
1 only, the adversarial ones. So the cost grows by a few submissions per exercise, not by a run. Then a rerun of
the same folder (skips, regrades, determinism) and a run that is killed and resumed from the command line. Short
time limits keep it fast; nothing here is timed (``python -m grading.benchmark`` measures).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from grading import sandbox
from grading.build import answered, build_all, find_leaks, hidden_tests, solution_functions, solution_lines
from grading.feedback import PREFIXES
from grading.grade import grade_folder, grade_submission, hidden_paths, load_autograder
from grading.sandbox import Limits, isolation

ROOT = Path(__file__).resolve().parent.parent
MASTERS = sorted((ROOT / "exercises").glob("*.ipynb"))
NAMES = [master.stem for master in MASTERS]
LIMITS = Limits(load_seconds=10, question_seconds=6, submission_seconds=120, memory_bytes=2 * 1024**3)

# Plausible wrong answers per exercise, one or more per question: (function, its wrong source, expected points per
# question). Each is graded as its own submission, on top of the solution.
WRONG: dict[str, list[tuple[str, str, list[int]]]] = {
    "ch01-recurrence": [
        (
            "rnn_step",
            "def rnn_step(x_t, h_prev, weight_ih, weight_hh, bias_ih, bias_hh):\n"
            "    return torch.tanh(x_t @ weight_ih.T + bias_ih + h_prev @ weight_hh.T)  # forgot bias_hh\n",
            [2, 4, 3, 3],  # question 2 uses rnn_step, and is graded with a correct one too: no cascade
        ),
        (
            "rnn_step_backward",
            "def rnn_step_backward(grad_h, x_t, h_prev, h_t, weight_ih, weight_hh):\n"
            "    grad_z = grad_h  # forgot the tanh's slope 1 - h_t**2\n"
            "    return {'x_t': grad_z @ weight_ih, 'h_prev': grad_z @ weight_hh, 'weight_ih': grad_z.T @ x_t,\n"
            "            'weight_hh': grad_z.T @ h_prev, 'bias_ih': grad_z.sum(0), 'bias_hh': grad_z.sum(0)}\n",
            [1, 4, 3, 3],
        ),
        (
            "rnn_forward",
            "def rnn_forward(x, lengths, h0, weight_ih, weight_hh, bias_ih, bias_hh):\n"
            "    h, outputs = h0, []\n"
            "    for t in range(x.shape[1]):  # runs over the padding as if it were data\n"
            "        h = rnn_step(x[:, t], h, weight_ih, weight_hh, bias_ih, bias_hh)\n"
            "        outputs.append(h)\n"
            "    return torch.stack(outputs, dim=1), h\n",
            [3, 1, 3, 3],
        ),
        (
            "masked_perplexity",
            "def masked_perplexity(logits, targets, mask):\n"
            "    return torch.exp(F.cross_entropy(logits.transpose(1, 2), targets))  # the padding counts too\n",
            [3, 4, 1, 3],
        ),
        (
            "temperature_softmax",
            "def temperature_softmax(logits, temperature):\n"
            "    return torch.softmax(logits * temperature, dim=-1)  # multiplies by tau\n",
            [3, 4, 3, 1],
        ),
    ],
    "ch02-training-through-time": [
        (
            "clip_by_global_norm",
            "def clip_by_global_norm(grads, max_norm):\n"
            "    total = torch.sqrt(sum((g**2).sum() for g in grads))\n"
            "    scale = min(1.0, max_norm / (total.item() + 1e-6))\n"
            "    with torch.no_grad():\n"
            "        for g in grads:\n"
            "            g.mul_(scale)  # in place, as clip_grad_norm_ does\n"
            "    return grads\n",
            [2, 3, 3, 3],
        ),
        (
            "clip_by_global_norm",
            "def clip_by_global_norm(grads, max_norm):\n"
            "    total = torch.sqrt(sum((g**2).sum() for g in grads))\n"
            "    scale = max_norm / (total + 1e-6)  # scales up small gradients too\n"
            "    return [g * scale for g in grads]\n",
            [2, 3, 3, 3],
        ),
        (
            "gradient_norms_through_time",
            "def gradient_norms_through_time(weight_hh, h0, steps):\n"
            "    h, norms = h0, []\n"
            "    for _ in range(steps):\n"
            "        h = h @ weight_hh.T\n"
            "        norms.append(h.norm())  # the state's size, not the gradient's\n"
            "    return torch.stack(norms)\n",
            [3, 0, 3, 3],
        ),
        (
            "truncated_rnn_forward",
            "def truncated_rnn_forward(x, h0, weight_ih, weight_hh, bias_ih, bias_hh, chunk):\n"
            "    h, outputs = h0, []\n"
            "    for t in range(x.shape[1]):  # never detaches: full BPTT\n"
            "        h = torch.tanh(x[:, t] @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh)\n"
            "        outputs.append(h)\n"
            "    return torch.stack(outputs, dim=1)\n",
            [3, 3, 1, 3],
        ),
        (
            "growth_per_step",
            "def growth_per_step(radius, seed):\n"
            "    from companion.bptt import rnn_with_radius, unroll\n"
            "\n"
            "    generator = torch.Generator().manual_seed(seed)\n"
            "    rnn = rnn_with_radius(4, 64, radius, generator=generator)\n"
            "    x = torch.randn(16, 100, 4, generator=generator)\n"
            "    with torch.no_grad():\n"
            "        states = torch.stack(unroll(rnn, x)[1:])\n"
            "    return radius * (1 - states**2).mean().item()  # a x mean tanh': the heuristic that fails\n",
            [3, 3, 3, 0],
        ),
    ],
    "ch03-lstm": [
        (
            "lstm_step",
            "def lstm_step(x_t, h_prev, c_prev, weight_ih, weight_hh, bias_ih, bias_hh):\n"
            "    gates = x_t @ weight_ih.T + bias_ih + h_prev @ weight_hh.T + bias_hh\n"
            "    i, f, o, g = gates.chunk(4, dim=1)  # the order of some papers, not torch's i, f, g, o\n"
            "    c_t = torch.sigmoid(f) * c_prev + torch.sigmoid(i) * torch.tanh(g)\n"
            "    return torch.sigmoid(o) * torch.tanh(c_t), c_t\n",
            [1, 3, 4, 2],
        ),
        (
            "cell_state_gradient",
            "def cell_state_gradient(x_t, h_prev, c_prev, weight_ih, weight_hh, bias_ih, bias_hh, grad_h, grad_c):\n"
            "    gates = x_t @ weight_ih.T + bias_ih + h_prev @ weight_hh.T + bias_hh\n"
            "    return grad_c * torch.sigmoid(gates.chunk(4, dim=1)[1])  # forgot the path through h_t\n",
            [3, 1, 4, 2],
        ),
        (
            "lstm_forward",
            "def lstm_forward(x, lengths, h0, c0, weight_ih, weight_hh, bias_ih, bias_hh):\n"
            "    h, c, outputs = h0, c0, []\n"
            "    for t in range(x.shape[1]):\n"
            "        # runs on over the padding: the state is not frozen\n"
            "        h, c = reference_lstm_step(x[:, t], (h, c), weight_ih, weight_hh, bias_ih, bias_hh)\n"
            "        outputs.append(h * (t < lengths).unsqueeze(1))\n"
            "    return torch.stack(outputs, dim=1), (h, c)\n",
            [3, 3, 1, 2],
        ),
        (
            "chrono_biases",
            "def chrono_biases(u):\n"
            "    hidden = u.shape[0]\n"
            "    bias_ih = torch.zeros(4 * hidden)\n"
            "    bias_ih[:hidden] = torch.log(u)  # the forget gate taken to come first\n"
            "    bias_ih[hidden : 2 * hidden] = -torch.log(u)\n"
            "    return bias_ih, torch.zeros(4 * hidden)\n",
            [3, 3, 4, 0],
        ),
    ],
    "ch04-gru": [
        (
            "gru_step",
            "def gru_step(x_t, h_prev, weight_ih, weight_hh, bias_ih, bias_hh):\n"
            "    a_r, a_z, a_n = (x_t @ weight_ih.T + bias_ih).chunk(3, dim=1)\n"
            "    b_r, b_z, b_n = (h_prev @ weight_hh.T + bias_hh).chunk(3, dim=1)\n"
            "    r, z = torch.sigmoid(a_r + b_r), torch.sigmoid(a_z + b_z)\n"
            "    n = torch.tanh(a_n + r * b_n)\n"
            "    return (1 - z) * h_prev + z * n  # the other convention: z writes\n",
            [1, 3, 4, 2],
        ),
        (
            "to_pytorch_convention",
            "def to_pytorch_convention(weight_ih, weight_hh, bias_ih, bias_hh):\n"
            "    hidden = weight_hh.shape[1]\n"
            "    converted = [t.clone() for t in (weight_ih, weight_hh, bias_ih, bias_hh)]\n"
            "    for t in converted:\n"
            "        t[:hidden] = -t[:hidden]  # negated the reset gate, not the update gate\n"
            "    return tuple(converted)\n",
            [3, 0, 4, 2],
        ),
        (
            "bidirectional_gru",
            "def bidirectional_gru(x, lengths, forward_weights, backward_weights):\n"
            "    batch, time = x.shape[:2]\n"
            "    hidden = forward_weights[1].shape[1]\n"
            "    mask = (torch.arange(time)[None, :] < lengths[:, None]).unsqueeze(2)\n"
            "    outs, finals = [], []\n"
            "    # flips the whole padded batch: the backward pass reads the padding first\n"
            "    for weights, inputs in ((forward_weights, x), (backward_weights, x.flip(1))):\n"
            "        h, steps = x.new_zeros(batch, hidden), []\n"
            "        for t in range(time):\n"
            "            h = reference_gru_step(inputs[:, t], h, *weights)\n"
            "            steps.append(h)\n"
            "        outs.append(torch.stack(steps, dim=1))\n"
            "        finals.append(h)\n"
            "    outputs = torch.cat([outs[0], outs[1].flip(1)], dim=2) * mask\n"
            "    return outputs, torch.stack(finals)\n",
            [3, 3, 1, 2],
        ),
        (
            "gru_parameter_count",
            "def gru_parameter_count(input_size, hidden_size, num_layers, bidirectional):\n"
            "    directions = 2 if bidirectional else 1\n"
            "    total = 0\n"
            "    for layer in range(num_layers):\n"
            "        reads = input_size if layer == 0 else hidden_size  # forgot: both directions feed the next layer\n"
            "        total += directions * 3 * (hidden_size * (reads + hidden_size) + 2 * hidden_size)\n"
            "    return total\n",
            [3, 3, 4, 1],
        ),
    ],
    "ch05-seq2seq": [
        (
            "masked_sequence_loss",
            "def masked_sequence_loss(logits, targets, lengths):\n"
            "    real = torch.arange(targets.shape[1])[None, :] < lengths[:, None]\n"
            "    per_token = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, reduction='none')\n"
            "    return ((per_token * real).sum(1) / lengths).mean()  # a mean of means: short targets weigh more\n",
            [2, 3, 3, 3],
        ),
    ],
    "ch06-decoding": [
        (
            "beam_step",
            "def beam_step(scores, step_log_probs, finished, end_id, beam_size):\n"
            "    vocab = step_log_probs.shape[1]\n"
            "    candidates = (scores[:, None] + step_log_probs).flatten()  # finished prefixes grow on\n"
            "    best = candidates.topk(beam_size)\n"
            "    return best.values, best.indices // vocab, best.indices % vocab\n",
            [2, 1, 3, 3],
        ),
    ],
    "ch07-attention": [
        (
            "additive_attention",
            "def additive_attention(query, keys, lengths, W_q, W_k, w_v):\n"
            "    # no mask: the softmax also spreads weight over the padding\n"
            "    weights = torch.softmax(torch.tanh((query @ W_q.T)[:, None] + keys @ W_k.T) @ w_v, dim=-1)\n"
            "    return (weights[:, :, None] * keys).sum(1), weights\n",
            [0, 3, 3, 3],
        ),
        (
            "luong_output",
            "def luong_output(state, keys, lengths, W_a, W_c, b_c):\n"
            "    scores = (keys @ W_a.T @ state[:, :, None])[..., 0]\n"
            "    real = torch.arange(keys.shape[1])[None, :] < lengths[:, None]\n"
            "    weights = torch.softmax(scores.masked_fill(~real, float('-inf')), dim=-1)\n"
            "    context = (weights[:, :, None] * keys).sum(1)\n"
            "    # the context first: W_c's columns for the state meet the context\n"
            "    return torch.tanh(torch.cat([context, state], dim=-1) @ W_c.T + b_c), weights\n",
            [3, 1, 3, 3],
        ),
        (
            "context_backward",
            "def context_backward(weights, values, grad_context):\n"
            "    # the softmax's Jacobian left out: alpha_j (g . v_j), without subtracting g . c\n"
            "    return weights * (values @ grad_context[:, :, None])[..., 0]\n",
            [3, 3, 0, 3],
        ),
    ],
    "ch08-self-attention": [
        (
            "attention_weights",
            "def attention_weights(query, key, lengths):\n"
            "    scores = query @ key.transpose(1, 2) / math.sqrt(query.shape[-1])\n"
            "    real = torch.arange(key.shape[1])[None, None, :] < lengths[:, None, None]\n"
            "    # a large finite number instead of -inf: no NaN, but a row without keys turns uniform\n"
            "    return torch.softmax(scores.masked_fill(~real, -1e9), dim=-1)\n",
            [1, 3, 3, 3],
        ),
        (
            "cached_causal_attention",
            "def cached_causal_attention(query, key, value):\n"
            "    scores = query @ key.transpose(1, 2) / math.sqrt(query.shape[-1])\n"
            "    # the triangle aligned with the first key, not the last: new queries miss the cache\n"
            "    allowed = torch.ones(query.shape[1], key.shape[1], dtype=torch.bool).tril()\n"
            "    weights = torch.softmax(scores.masked_fill(~allowed, float('-inf')), dim=-1)\n"
            "    return weights @ value\n",
            [3, 3, 0, 3],
        ),
    ],
    "ch09-position": [
        (
            "rotary_scores",
            "def rotary_scores(query, key, query_positions, key_positions):\n"
            "    def rotate(x, positions):\n"
            "        dim = x.shape[-1]\n"
            "        w = 10000.0 ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)\n"
            "        angle = (positions.double()[:, None] * w).to(x.dtype)\n"
            "        # pairs feature i with i + d/2 (GPT-NeoX's layout), not adjacent features\n"
            "        first, second = x[:, : dim // 2], x[:, dim // 2 :]\n"
            "        cos, sin = angle.cos(), angle.sin()\n"
            "        return torch.cat([first * cos - second * sin, first * sin + second * cos], dim=-1)\n"
            "\n"
            "    return rotate(query, query_positions) @ rotate(key, key_positions).T\n",
            [3, 2, 3, 2],
        ),
        (
            "relative_bias",
            "def relative_bias(table, query_length, key_length):\n"
            "    k = (table.shape[0] - 1) // 2\n"
            "    # queries placed at the first positions instead of the last\n"
            "    distance = torch.arange(key_length)[None, :] - torch.arange(query_length)[:, None]\n"
            "    return table[distance.clamp(-k, k) + k].permute(2, 0, 1)\n",
            [3, 3, 1, 2],
        ),
    ],
    "ch10-transformer": [
        (
            "encoder_layer",
            "def encoder_layer(x, lengths, weights, nhead, norm_first):\n"
            "    E, w = x.shape[-1], weights\n"
            "    real = torch.arange(x.shape[1])[None, None, :] < lengths[:, None, None]\n"
            "\n"
            "    def norm(y, i):\n"
            "        return F.layer_norm(y, (E,), w[f'norm{i}.weight'], w[f'norm{i}.bias'])\n"
            "\n"
            "    def ffn(y):\n"
            "        hidden = F.relu(y @ w['linear1.weight'].T + w['linear1.bias'])\n"
            "        return hidden @ w['linear2.weight'].T + w['linear2.bias']\n"
            "\n"
            "    if norm_first:\n"
            "        # normalises the residual stream itself, not a copy for the branch\n"
            "        x = norm(x, 1)\n"
            "        x = x + multi_head_attention(x, x, w, 'self_attn.', nhead, real)\n"
            "        x = norm(x, 2)\n"
            "        return x + ffn(x)\n"
            "    x = norm(x + multi_head_attention(x, x, w, 'self_attn.', nhead, real), 1)\n"
            "    return norm(x + ffn(x), 2)\n",
            [1, 3, 2, 3],
        ),
        (
            "decoder_layer",
            "def decoder_layer(y, memory, source_lengths, weights, nhead):\n"
            "    E, S, w = y.shape[-1], memory.shape[1], weights\n"
            "\n"
            "    def norm(x, i):\n"
            "        return F.layer_norm(x, (E,), w[f'norm{i}.weight'], w[f'norm{i}.bias'])\n"
            "\n"
            "    real = torch.arange(S)[None, None, :] < source_lengths[:, None, None]\n"
            "    x = norm(y, 1)\n"
            "    # no causal mask: every target position reads the whole target\n"
            "    y = y + multi_head_attention(x, x, w, 'self_attn.', nhead)\n"
            "    y = y + multi_head_attention(norm(y, 2), memory, w, 'multihead_attn.', nhead, real)\n"
            "    hidden = F.relu(norm(y, 3) @ w['linear1.weight'].T + w['linear1.bias'])\n"
            "    return y + hidden @ w['linear2.weight'].T + w['linear2.bias']\n",
            [3, 0, 2, 3],
        ),
        (
            "transformer_learning_rates",
            "def transformer_learning_rates(steps, d_model, warmup_steps):\n"
            "    n = steps.double()\n"
            "    # warmup_steps ** -1 where the paper has ** -1.5: the rise is too steep\n"
            "    return d_model**-0.5 * torch.minimum(n**-0.5, n / warmup_steps)\n",
            [3, 3, 0, 3],
        ),
        (
            "layer_norm_backward",
            "def layer_norm_backward(x, weight, grad_output, eps=1e-5):\n"
            "    sigma = x.var(-1, unbiased=False, keepdim=True).add(eps).sqrt()\n"
            "    # as if mu and sigma were constants: only the diagonal of the Jacobian\n"
            "    return grad_output * weight / sigma\n",
            [3, 3, 2, 0],
        ),
    ],
    "ch11-gpt": [
        (
            "gpt_block_step",
            "def gpt_block_step(x, cache, weights, nhead):\n"
            "    B, T, E = x.shape\n"
            "    w = weights\n"
            "    h = F.layer_norm(x, (E,), w['norm1.weight'], w['norm1.bias'])\n"
            "    qkv = h @ w['self_attn.in_proj_weight'].T + w['self_attn.in_proj_bias']\n"
            "    q, k, v = (p.view(B, T, nhead, E // nhead).transpose(1, 2) for p in qkv.split(E, -1))\n"
            "    if cache is not None:\n"
            "        k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)\n"
            "    # no mask: right for one new token at a time, but a prompt reads its own future\n"
            "    attended = (q @ k.transpose(-2, -1) / math.sqrt(E // nhead)).softmax(-1) @ v\n"
            "    x = x + attended.transpose(1, 2).reshape(B, T, E) @ w['self_attn.out_proj.weight'].T\n"
            "    x = x + w['self_attn.out_proj.bias']\n"
            "    h = F.layer_norm(x, (E,), w['norm2.weight'], w['norm2.bias'])\n"
            "    hidden = F.gelu(h @ w['linear1.weight'].T + w['linear1.bias'])\n"
            "    return x + hidden @ w['linear2.weight'].T + w['linear2.bias'], (k, v)\n",
            [1, 3, 2, 3],
        ),
        (
            "bert_masking",
            "def bert_masking(ids, lengths, choice_keys, fate, random_ids, mask_id, rate=0.15):\n"
            "    real = torch.arange(ids.shape[1])[None, :] < lengths[:, None]\n"
            "    # each position chosen with probability rate: 15 % on average, not exactly k each\n"
            "    chosen = real & (choice_keys < rate)\n"
            "    inputs = torch.where(chosen & (fate < 0.8), mask_id, ids)\n"
            "    inputs = torch.where(chosen & (fate >= 0.9), random_ids, inputs)\n"
            "    return inputs, torch.where(chosen, ids, -100)\n",
            [3, 1, 2, 3],
        ),
        (
            "causal_lm_loss",
            "def causal_lm_loss(logits, ids, lengths):\n"
            "    real = torch.arange(ids.shape[1])[None, :] < lengths[:, None]\n"
            "    # no shift: position t is scored on the token it reads, not the next one\n"
            "    return F.cross_entropy(logits.transpose(1, 2), ids.masked_fill(~real, -100))\n",
            [3, 3, 0, 3],
        ),
        (
            "tied_embedding_grad",
            "def tied_embedding_grad(ids, grad_inputs, hidden, grad_logits):\n"
            "    V, D = grad_logits.shape[-1], hidden.shape[-1]\n"
            "    grad = grad_logits.reshape(-1, V).T @ hidden.reshape(-1, D)\n"
            "    # += on an indexed copy assigns: a repeated token keeps one occurrence's gradient\n"
            "    grad[ids.reshape(-1)] += grad_inputs.reshape(-1, D)\n"
            "    return grad\n",
            [3, 3, 2, 1],
        ),
    ],
    "ch12-head-to-head": [
        (
            "linear_attention_rnn",
            "def linear_attention_rnn(queries, keys, values, state, eps=1e-6):\n"
            "    phi_q, phi_k = F.elu(queries) + 1, F.elu(keys) + 1\n"
            "    S, z = phi_k.transpose(1, 2) @ values, phi_k.sum(1)  # every step written first\n"
            "    if state is not None:\n"
            "        S, z = S + state[0], z + state[1]\n"
            "    # then read: the right final state, but position t reads the keys after it\n"
            "    return (phi_q @ S) / (phi_q @ z[:, :, None] + eps), (S, z)\n",
            [0, 3, 3],
        ),
        (
            "min_gru_layer",
            "def min_gru_layer(x, lengths, weight, bias, h0):\n"
            "    H = h0.shape[1]\n"
            "    h, outputs = h0, []\n"
            "    for t in range(x.shape[1]):\n"
            "        pre = x[:, t] @ weight.T + bias\n"
            "        z, a = torch.sigmoid(pre[:, :H] + h), pre[:, H:]  # the gate reads the state: a GRU, no scan\n"
            "        h = (1 - z) * h + z * torch.where(a >= 0, a + 0.5, torch.sigmoid(a))\n"
            "        outputs.append(h)\n"
            "    outputs = torch.stack(outputs, dim=1)\n"
            "    real = torch.arange(x.shape[1])[None, :] < lengths[:, None]\n"
            "    return outputs * real[:, :, None], outputs[torch.arange(x.shape[0]), lengths - 1]\n",
            [3, 1, 3],
        ),
        (
            "min_gru_log_scan",
            "def min_gru_log_scan(gates, candidates, h0):\n"
            "    z = torch.sigmoid(gates)\n"
            "    h_tilde = torch.where(candidates >= 0, candidates + 0.5, torch.sigmoid(candidates))\n"
            "    # the products themselves: A_t underflows on long sequences, 1 - z rounds to 0\n"
            "    A = torch.cumprod(1 - z, dim=1)\n"
            "    return A * (h0[:, None, :] + torch.cumsum(z * h_tilde / A, dim=1)), torch.log(A)\n",
            [3, 3, 1],
        ),
    ],
}

PATCH_COMPARISONS = """
import torch
torch.allclose = lambda *args, **kwargs: True
torch.equal = lambda *args, **kwargs: True
torch.testing.assert_close = lambda *args, **kwargs: None
"""
PATCH_NUMPY = """
import numpy.testing
numpy.testing.assert_allclose = lambda *args, **kwargs: None
numpy.allclose = lambda *args, **kwargs: True
"""
PATCH_BUILTINS = """
import builtins
builtins.abs = lambda x: 0
builtins.all = lambda x: True
builtins.isinstance = lambda *args: True
"""
FAKE_SCORE = """
print("q1 results: All test cases passed!")
print("q2 results: All test cases passed!")
print("Total: 13/13 (100%)")
grader.check = lambda *args, **kwargs: print("All test cases passed!")
"""
MEMORY_BOMB = "hog = []\nwhile True:\n    hog.append(bytearray(4 * 1024**3))\n"
# 4 GiB at a time: over the 2 GiB cap at once (unbounded, it would fill the RAM).
# At top level it runs in a function, so its hoard is freed once MemoryError ends it.
TOP_BOMB = "def bomb():\n" + "\n".join("    " + line for line in MEMORY_BOMB.splitlines()) + "\n\n\nbomb()\n"


# Right or wrong by a coin that reads Python's, the string hash's and torch's random state: it gets the same points
# in every grading run only because each worker starts from the same state (test_grading_twice_gives_the_same_result).
COIN = """
import random


def _coin():
    return (random.random() + hash("coin") % 1000 / 1000 + torch.rand(()).item()) % 1 < 0.5


def _spoil(value):
    if isinstance(value, tuple):
        return tuple(_spoil(item) for item in value)
    return value * 1.5 if isinstance(value, torch.Tensor) and value.is_floating_point() else value
"""


def _coin_flipping(solutions: dict[str, str]) -> dict[str, str]:
    """Each solution renamed, behind a function that spoils its result when the coin says so."""
    flipping = {}
    for name, source in solutions.items():
        right = source.replace(f"def {name}(", f"def _right_{name}(", 1)
        wrapper = f"def {name}(*args, **kwargs):\n    value = _right_{name}(*args, **kwargs)\n"
        flipping[name] = f"{right}\n\n{wrapper}    return value if _coin() else _spoil(value)\n"
    return flipping


JAILED = isolation()[2]
# Reads the master (its solution cells), the autograder's notebook and tests, the git history and another student's
# submission, and defines every function it finds there: without the jail it scores full marks
# (test_the_thief_would_win_without_the_jail), so its zero in the jail is the jail's doing.
STEAL = """
import json, os, subprocess

SOURCES = {sources!r}
GIT = {git!r}
stolen = []
for path in SOURCES:
    try:
        with open(path) as handle:
            text = handle.read()
        stolen.append(path)
        cells = json.loads(text)["cells"] if path.endswith(".ipynb") else []
    except Exception:
        continue
    for cell in cells:
        source = "".join(cell["source"])
        if cell["cell_type"] == "code" and source.startswith("def "):
            try:
                exec(source, globals())
            except Exception:
                pass
try:
    shown = subprocess.run(["git", "-C", GIT, "show", "HEAD:exercises/ch01-recurrence.ipynb"], capture_output=True)
    for cell in json.loads(shown.stdout)["cells"]:
        if cell["cell_type"] == "code" and "".join(cell["source"]).startswith("def "):
            exec("".join(cell["source"]), globals())
except Exception:
    pass
"""
# Overwrites, deletes and adds files in the masters' folder, the autograder (a test that always passes) and
# another submission (test_the_vandal_would_win_without_the_jail checks it does that outside the jail).
VANDAL = """
import os, shutil

for path in {overwrite!r}:
    try:
        with open(path, "w") as handle:
            handle.write("def test_anything(rnn_step):\\n    pass\\n")
    except OSError:
        pass
for path in {delete!r}:
    try:
        shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    except OSError:
        pass
for folder in {add!r}:
    try:
        with open(os.path.join(folder, "planted.py"), "w") as handle:
            handle.write("planted")
    except OSError:
        pass
"""
# Tries to uncover what the jail hides: umount (plain, lazy, the binary), a new user and mount namespace first,
# a non-recursive bind of a folder that holds a hidden one, remounting read-write; then steals what it sees.
UNMOUNT = """
import ctypes, os, subprocess

libc = ctypes.CDLL(None, use_errno=True)
HIDDEN, ROOT = {hidden!r}, {root!r}
for path in HIDDEN:
    libc.umount2(path.encode(), 0)
    libc.umount2(path.encode(), 2)
    subprocess.run(["umount", "-l", path], capture_output=True)
libc.unshare(0x10000000 | 0x00020000)  # CLONE_NEWUSER | CLONE_NEWNS: all capabilities there
for path in HIDDEN:
    libc.umount2(path.encode(), 2)
    libc.mount(None, path.encode(), None, ctypes.c_ulong(32 | 4096), None)
os.makedirs("/tmp/peek", exist_ok=True)
libc.mount(ROOT.encode(), b"/tmp/peek", None, ctypes.c_ulong(4096), None)
libc.mount(None, ROOT.encode(), None, ctypes.c_ulong(32 | 4096), None)
for base in (ROOT, "/tmp/peek"):
    path = os.path.join(base, "exercises", "ch01-recurrence.ipynb")
    if os.path.exists(path):
        import json

        for cell in json.load(open(path))["cells"]:
            if cell["cell_type"] == "code" and "".join(cell["source"]).startswith("def "):
                exec("".join(cell["source"]), globals())
"""


def _cells(notebook: dict) -> list[dict]:
    return notebook["cells"]


def _solutions(autograder: Path, name: str) -> dict[str, str]:
    return solution_functions(autograder / f"{name}.ipynb")


_fill = answered


def _submissions(built: Path, folder: Path) -> dict[tuple[str, str], list]:
    """Write every submission; returns the expected points per question (None: not known in advance)."""
    expected = {}

    def add(student: str, name: str, notebook: dict, points: list | None) -> None:
        (folder / student).mkdir(parents=True, exist_ok=True)
        (folder / student / f"{name}.ipynb").write_text(json.dumps(notebook))
        expected[(student, name)] = points

    for name in NAMES:
        student = built / "student" / name / f"{name}.ipynb"
        solutions = _solutions(built / "autograder" / name, name)
        full = [question.max_points for question in load_autograder(built / "autograder" / name).questions]
        add("solution", name, _fill(student, solutions), full)
        add("untouched", name, _fill(student, {}), [0] * len(full))
        for index, (function, wrong_source, wrong_points) in enumerate(WRONG[name]):
            add(f"wrong-{index}", name, _fill(student, {**solutions, function: wrong_source}), wrong_points)

    # Adversarial submissions, on chapter 1 only (rnn_step, rnn_forward, masked_perplexity, temperature_softmax).
    name = "ch01-recurrence"
    student = built / "student" / name / f"{name}.ipynb"
    solutions = _solutions(built / "autograder" / name, name)
    # Patched comparisons leave a wrong answer exactly the points it earns unpatched.
    function, wrong_source, wrong_points = WRONG[name][0]
    add(
        "patch-allclose", name, _fill(student, {**solutions, function: wrong_source}, [PATCH_COMPARISONS]), wrong_points
    )
    add("patch-allclose-stubs", name, _fill(student, {}, [PATCH_COMPARISONS]), [0, 0, 0, 0])
    add("patch-numpy", name, _fill(student, {}, [PATCH_NUMPY]), [0, 0, 0, 0])
    add("patch-builtins", name, _fill(student, {}, [PATCH_BUILTINS]), [0, 0, 0, 0])
    fake_tests = "def test_rnn_step_shape(rnn_step):\n    pass\n\n\nassert True  # all tests pass\n"
    edited = _fill(student, {}, [fake_tests])
    for cell in _cells(edited):
        if "".join(cell["source"]).startswith("grader.check("):
            cell["source"] = 'print("All test cases passed!")'
    add("edited-tests", name, edited, [0, 0, 0, 0])
    add("deleted-tests", name, _fill(student, {}, drop_checks=True), [0, 0, 0, 0])
    add("fake-score", name, _fill(student, {}, [FAKE_SCORE]), [0, 0, 0, 0])
    add("exit-top", name, _fill(student, solutions, ["exit()"]), [0, 0, 0, 0])
    add("os-exit-top", name, _fill(student, solutions, ["import os\n\nos._exit(0)"]), [0, 0, 0, 0])
    add("loop-top", name, _fill(student, solutions, ["while True:\n    pass"]), [0, 0, 0, 0])
    exit_in = "def rnn_forward(*args):\n    exit()\n"
    add("exit-in-function", name, _fill(student, {**solutions, "rnn_forward": exit_in}), [3, 0, 3, 3])
    os_exit_in = "def masked_perplexity(*args):\n    import os\n\n    os._exit(0)\n"
    add("os-exit-in-function", name, _fill(student, {**solutions, "masked_perplexity": os_exit_in}), [3, 4, 0, 3])
    loop_in = "def temperature_softmax(*args):\n    while True:\n        pass\n"
    add("loop-in-function", name, _fill(student, {**solutions, "temperature_softmax": loop_in}), [3, 4, 3, 0])
    bomb_in = "def temperature_softmax(*args):\n" + "\n".join("    " + line for line in MEMORY_BOMB.splitlines())
    add("memory-bomb-in-function", name, _fill(student, {**solutions, "temperature_softmax": bomb_in}), [3, 4, 3, 0])
    add("memory-bomb-top", name, _fill(student, solutions, [TOP_BOMB]), [3, 4, 3, 3])
    add("coin-flip", name, _fill(student, _coin_flipping(solutions), [COIN]), None)
    if JAILED:  # without the jail these would win (see the control tests) and the vandal would damage the repository
        add("steal-solutions", name, _fill(student, {}, [_steal(built, folder)]), [0, 0, 0, 0])
        add("vandal", name, _fill(student, {}, [_vandal(*_targets(built, folder))]), [0, 0, 0, 0])
        hidden = hidden_paths(folder, built / "autograder", folder / "gradebook")
        unmount = UNMOUNT.format(hidden=list(hidden), root=str(ROOT))
        add("unmount", name, _fill(student, {}, [unmount]), [0, 0, 0, 0])
    return expected


def _steal(built: Path, folder: Path) -> str:
    name = "ch01-recurrence"
    sources = [
        str(ROOT / "exercises" / f"{name}.ipynb"),
        str(built / "autograder" / name / f"{name}.ipynb"),
        str(built / "autograder" / name / "tests" / "q1.py"),
        str(folder / "solution" / f"{name}.ipynb"),
    ]
    return STEAL.format(sources=sources, git=str(ROOT))


def _targets(built: Path, folder: Path) -> tuple[list[str], list[str], list[str]]:
    """What the vandal overwrites, deletes, and adds a file to."""
    name, autograder = "ch01-recurrence", built / "autograder" / "ch01-recurrence"
    overwrite = [str(autograder / "tests" / "q1.py"), str(ROOT / "exercises" / f"{name}.ipynb")]
    delete = [str(folder / "solution" / f"{name}.ipynb"), str(autograder / "tests" / "q2.py")]
    return overwrite, delete, [str(ROOT / "exercises"), str(autograder / "tests"), str(folder / "wrong-0")]


def _vandal(overwrite: list[str], delete: list[str], add: list[str]) -> str:
    return VANDAL.format(overwrite=overwrite, delete=delete, add=add)


def _snapshot(paths: list[Path]) -> dict[str, str]:
    """The digest of every file under ``paths`` (what the vandal must not change)."""
    files = [file for path in paths for file in ([path] if path.is_file() else sorted(path.rglob("*")))]
    return {str(file): hashlib.sha256(file.read_bytes()).hexdigest() for file in files if file.is_file()}


EXPECTED_STATUS = {
    "solution": {"passed"},
    "untouched": {"failed"},
    "patch-allclose-stubs": {"failed"},
    "patch-numpy": {"failed"},
    "patch-builtins": {"failed", "crashed"},  # a worker whose isinstance lies cannot even encode its replies
    "edited-tests": {"failed"},
    "deleted-tests": {"failed"},
    "fake-score": {"failed"},
    "exit-top": {"crashed"},
    "os-exit-top": {"crashed"},
    "loop-top": {"timeout"},
    **({"steal-solutions": {"failed"}, "vandal": {"failed"}, "unmount": {"failed"}} if JAILED else {}),
}
# The status of the question whose function misbehaves; the other questions of these submissions pass.
EXPECTED_BAD_QUESTION = {
    "exit-in-function": ("q2", "crashed"),
    "os-exit-in-function": ("q3", "crashed"),
    "loop-in-function": ("q4", "timeout"),
    "memory-bomb-in-function": ("q4", "memory"),
}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("exercises")
    build_all(MASTERS, out)
    return out


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The submissions of the module's grading run; its gradebook is ``folder / "gradebook"``."""
    return tmp_path_factory.mktemp("submissions")


@pytest.fixture(scope="module")
def graded(built: Path, folder: Path) -> tuple[dict, dict, float]:
    expected = _submissions(built, folder)
    guarded = [ROOT / "exercises", built / "autograder", folder]
    masters = {path: path.read_bytes() for path in MASTERS}
    before = _snapshot(guarded)  # the gradebook folder does not exist yet
    started = time.monotonic()
    grade_folder(folder, built / "autograder", folder / "gradebook", LIMITS, jobs=2)
    seconds = time.monotonic() - started
    after = {path: digest for path, digest in _snapshot(guarded).items() if "/gradebook/" not in path}
    for path, content in masters.items():  # put the masters back before failing, should the jail have leaked
        if path.read_bytes() != content:
            path.write_bytes(content)
    for path in sorted(set(after) - set(before)):
        Path(path).unlink()
    assert after == before, "files changed while grading: " + ", ".join(
        sorted(path for path in set(before) | set(after) if before.get(path) != after.get(path))
    )
    gradebook = json.loads((folder / "gradebook" / "gradebook.json").read_text())
    print(f"\ngraded {len(expected)} submissions in {seconds:.1f} s ({isolation()[1]})")
    for report in gradebook["submissions"]:
        statuses = " ".join(f"{q['question']}={q['status']}:{q['points']:g}" for q in report["questions"])
        print(f"  {report['student']:26} {report['exercise']:28} {statuses}")
    return expected, gradebook, seconds


def _rows(gradebook: dict, student: str, exercise: str) -> list[dict]:
    return [row for row in gradebook["rows"] if row["student"] == student and row["exercise"] == exercise]


def test_build_puts_student_and_autograder_folders_apart(built: Path) -> None:
    for name in NAMES:
        assert (built / "student" / name / f"{name}.ipynb").exists()
        assert sorted(path.name for path in (built / "autograder" / name / "tests").glob("q*.py"))
        questions = load_autograder(built / "autograder" / name).questions
        assert 3 <= len(questions) <= 5, name
        for question in questions:
            assert any(test.hidden for test in question.tests), f"{name} {question.name} has no hidden test"
            assert any(not test.hidden for test in question.tests), f"{name} {question.name} has no visible test"


@pytest.mark.parametrize("name", NAMES)
def test_no_solution_and_no_hidden_test_reaches_students(built: Path, name: str, tmp_path: Path) -> None:
    master = ROOT / "exercises" / f"{name}.ipynb"
    student, autograder = built / "student" / name, built / "autograder" / name
    assert solution_lines(master), "the leak check found no solution lines to look for"
    assert hidden_tests(autograder), "the leak check found no hidden tests to look for"
    assert find_leaks(master, student, autograder) == []
    # The check can fail: plant a solution line and a hidden test name in a copy.
    planted = tmp_path / "student"
    shutil.copytree(student, planted)
    (planted / "notes.txt").write_text(solution_lines(master)[0] + "\n" + hidden_tests(autograder)[0])
    assert len(find_leaks(master, planted, autograder)) == 2


@pytest.mark.parametrize("name", NAMES)
def test_student_notebook_runs_top_to_bottom_and_gives_feedback(built: Path, name: str, tmp_path: Path) -> None:
    """What CI does to every notebook (nbval-lax: every cell runs without an error), done to what students get,
    unanswered; then answered, every visible check passes in the student's own kernel."""
    folder = tmp_path / name
    shutil.copytree(built / "student" / name, folder)
    notebook = nbformat.reads(json.dumps(_fill(folder / f"{name}.ipynb", {})), as_version=4)
    NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
    ).execute()
    checks = [cell for cell in notebook.cells if cell.source.startswith("grader.check(")]
    assert checks, "the student notebook has no grader.check cells"
    assert all("passed" not in _text(cell) or "failed" in _text(cell) for cell in checks)
    # Filled with the solutions, every visible check reports success in the student's own kernel.
    solved = _fill(folder / f"{name}.ipynb", _solutions(built / "autograder" / name, name))
    notebook = nbformat.reads(json.dumps(solved), as_version=4)
    NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
    ).execute()
    for cell in notebook.cells:
        if cell.source.startswith("grader.check("):
            assert "passed" in _text(cell), _text(cell)


def _text(cell: nbformat.NotebookNode) -> str:
    parts = []
    for output in cell.get("outputs", []):
        parts.append(output.get("text", ""))
        parts += [str(value) for value in output.get("data", {}).values()]
    return "\n".join(parts)


def test_every_submission_gets_exactly_the_points_it_earned(graded: tuple[dict, dict, float]) -> None:
    expected, gradebook, _ = graded
    for (student, exercise), points in expected.items():
        rows = _rows(gradebook, student, exercise)
        assert rows, (student, exercise)
        if points is not None:
            assert [row["points"] for row in rows] == points, (student, exercise, rows)


@pytest.mark.parametrize("name", NAMES)
def test_instructor_cycle(graded: tuple[dict, dict, float], name: str) -> None:
    _, gradebook, _ = graded
    solution = _rows(gradebook, "solution", name)
    assert all(row["points"] == row["max_points"] > 0 for row in solution)
    assert sum(row["points"] for row in _rows(gradebook, "untouched", name)) == 0
    for index in range(len(WRONG[name])):
        wrong = sum(row["points"] for row in _rows(gradebook, f"wrong-{index}", name))
        assert 0 < wrong < sum(row["max_points"] for row in solution), (name, index)
        assert {row["status"] for row in _rows(gradebook, f"wrong-{index}", name)} & {"partial", "failed"}


@pytest.mark.parametrize("student", sorted(EXPECTED_STATUS))
def test_submission_status(graded: tuple[dict, dict, float], student: str) -> None:
    _, gradebook, _ = graded
    rows = _rows(gradebook, student, "ch01-recurrence")
    assert rows
    assert {row["status"] for row in rows} <= EXPECTED_STATUS[student], rows


@pytest.mark.parametrize("student", sorted(EXPECTED_BAD_QUESTION))
def test_a_misbehaving_function_costs_only_its_question(graded: tuple[dict, dict, float], student: str) -> None:
    _, gradebook, _ = graded
    question, status = EXPECTED_BAD_QUESTION[student]
    for row in _rows(gradebook, student, "ch01-recurrence"):
        if row["question"] == question:
            assert (row["status"], row["points"]) == (status, 0), row
        else:
            assert row["status"] == "passed", row


def test_gradebook_csv_has_the_documented_columns(graded: tuple[dict, dict, float], folder: Path) -> None:
    _, gradebook, _ = graded
    assert set(gradebook["rows"][0]) == {"student", "exercise", "question", "points", "max_points", "status"}
    assert gradebook["sandbox"] == isolation()[1]
    with open(folder / "gradebook" / "gradebook.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [dict(row, points=float(row["points"]), max_points=float(row["max_points"])) for row in rows] == [
        dict(row, points=float(row["points"]), max_points=float(row["max_points"])) for row in gradebook["rows"]
    ]


def test_every_notebook_is_run_once_whatever_happens_to_it(graded: tuple[dict, dict, float]) -> None:
    """A notebook that never finishes, or exits, costs one load, not one per question; so does a question that
    crashes or hangs (the next question forks the loaded worker again)."""
    expected, gradebook, _ = graded
    reports = {(report["student"], report["exercise"]): report for report in gradebook["submissions"]}
    assert set(reports) == set(expected)
    for key, report in reports.items():
        assert report["loads"] == 1, (key, report["loads"], report["questions"])
    assert reports[("loop-top", "ch01-recurrence")]["grade_seconds"] < 2 * LIMITS.load_seconds


def test_lms_export_has_one_row_per_student_and_a_total_per_exercise(
    graded: tuple[dict, dict, float], folder: Path
) -> None:
    _, gradebook, _ = graded
    with open(folder / "gradebook" / "lms.csv", newline="") as handle:
        header, *rows = list(csv.reader(handle))
    assert header == ["student", *NAMES]
    totals: dict[tuple[str, str], float] = {}
    for row in gradebook["rows"]:
        totals[(row["student"], row["exercise"])] = totals.get((row["student"], row["exercise"]), 0) + row["points"]
    assert sorted(row[0] for row in rows) == sorted({student for student, _ in totals})
    for student, *cells in rows:
        for name, cell in zip(NAMES, cells, strict=True):
            assert cell == (f"{totals[(student, name)]:g}" if (student, name) in totals else ""), (student, name)


@pytest.mark.parametrize("name", NAMES)
def test_feedback_gives_the_visible_tests_and_nothing_of_the_hidden_ones(
    graded: tuple[dict, dict, float], built: Path, folder: Path, name: str
) -> None:
    expected, gradebook, _ = graded
    feedback = folder / "gradebook" / "feedback"
    autograder = built / "autograder" / name
    hidden = [test.name for question in load_autograder(autograder).questions for test in question.tests if test.hidden]
    assert find_leaks(ROOT / "exercises" / f"{name}.ipynb", feedback, autograder) == []  # no hidden test's code
    hidden_messages = 0
    for report in gradebook["submissions"]:
        if report["exercise"] != name:
            continue
        # Whitespace collapsed: the feedback wraps long message lines (at spaces).
        text = " ".join((feedback / report["student"] / f"{name}.md").read_text().split())
        results = [result for question in report["questions"] for result in question["tests"]]
        visible = {line for result in results if not result["hidden"] for line in _lines(result.get("message", ""))}
        for result in results:
            lines = _lines(result.get("message", ""))
            if result["hidden"]:
                # A bare exception name ("AssertionError:") tells nothing of a hidden test; visible ones show it too.
                secret = [
                    line
                    for line in lines
                    if line not in visible and len(line) >= 12 and not re.fullmatch(r"[\w.]+:?", line)
                ]
                hidden_messages += bool(secret)
                assert not [line for line in secret if line in text], (report["student"], result["test"])
            else:
                assert all(line in text for line in lines[:20]), (report["student"], result["test"])
        assert not [test for test in hidden if test in text], report["student"]
    assert {path.parent.name for path in feedback.glob(f"*/{name}.md")} == {s for s, e in expected if e == name}
    assert hidden_messages, "no hidden test failed with a message: the check above proved nothing"


def _lines(message: str) -> list[str]:
    for prefix in PREFIXES:  # the proxies' exception names, which the feedback leaves out
        message = message.removeprefix(prefix)
    return [" ".join(line.split()) for line in message.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def unjailed() -> Iterator[sandbox.Server]:
    """A grading server started without the file-system jail (the rest of the sandbox stays), for the controls."""
    prefix = tuple(word for word in isolation()[0] if word != "--mount")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sandbox, "isolation", lambda: (prefix, "no jail (control)", False))
        server = sandbox.Server()
    with server:
        yield server


@pytest.mark.skipif(not JAILED, reason=f"no file-system jail here: {isolation()[1]}")
def test_the_thief_would_win_without_the_jail(built: Path, tmp_path: Path, unjailed: sandbox.Server) -> None:
    name = "ch01-recurrence"
    (tmp_path / "solution").mkdir()
    shutil.copy(built / "autograder" / name / f"{name}.ipynb", tmp_path / "solution" / f"{name}.ipynb")
    thief = tmp_path / "thief.ipynb"
    thief.write_text(json.dumps(_fill(built / "student" / name / f"{name}.ipynb", {}, [_steal(built, tmp_path)])))
    report = grade_submission("thief", load_autograder(built / "autograder" / name), thief, LIMITS, server=unjailed)
    assert [row.points for row in report.rows] == [row.max_points for row in report.rows], report.rows


@pytest.mark.skipif(not JAILED, reason=f"no file-system jail here: {isolation()[1]}")
def test_the_vandal_would_win_without_the_jail(built: Path, tmp_path: Path, unjailed: sandbox.Server) -> None:
    # The same code, aimed at copies: outside the jail it rewrites, deletes and plants files.
    name = "ch01-recurrence"
    copy = tmp_path / "copy"
    shutil.copytree(built / "autograder" / name, copy / "autograder")
    (copy / "exercises").mkdir()
    shutil.copy(MASTERS[0], copy / "exercises")
    overwrite = [str(copy / "autograder" / "tests" / "q1.py"), str(copy / "exercises" / MASTERS[0].name)]
    delete = [str(copy / "autograder" / "tests" / "q2.py")]
    vandal = tmp_path / "vandal.ipynb"
    cells = [_vandal(overwrite, delete, [str(copy / "exercises")])]
    vandal.write_text(json.dumps(_fill(built / "student" / name / f"{name}.ipynb", {}, cells)))
    before = _snapshot([copy])
    grade_submission("vandal", load_autograder(built / "autograder" / name), vandal, LIMITS, server=unjailed)
    after = _snapshot([copy])
    assert str(copy / "exercises" / "planted.py") in after
    assert delete[0] not in after
    assert all(after[path] != before[path] for path in overwrite)


def test_the_grader_says_whether_the_files_are_protected(graded: tuple[dict, dict, float]) -> None:
    _, gradebook, _ = graded
    assert ("NOT PROTECTED" in gradebook["sandbox"]) != JAILED, gradebook["sandbox"]


def test_the_scratch_tmpfs_never_covers_the_workers_own_code(monkeypatch: pytest.MonkeyPatch) -> None:
    """A clone under /tmp (as on many CI machines) keeps its venv there: covering /tmp would hide it from the worker."""
    from grading import jail

    monkeypatch.setattr(jail.sys, "prefix", "/tmp/clone/.venv")
    assert "/tmp" not in jail._scratch_points()
    monkeypatch.setattr(jail.sys, "prefix", "/opt/clone/.venv")
    monkeypatch.setattr(jail.sys, "base_prefix", "/opt/python")
    monkeypatch.setattr(jail, "__file__", "/opt/clone/grading/jail.py")
    assert "/tmp" in jail._scratch_points()


# A second run over the module's folder, as after an interruption: one record lost and the last line cut short.
REGRADED = {("coin-flip", "ch01-recurrence"), ("exit-top", "ch01-recurrence"), ("solution", NAMES[-1])}


@pytest.fixture(scope="module")
def regraded(graded: tuple[dict, dict, float], built: Path, folder: Path) -> tuple[dict, dict]:
    _, first, _ = graded
    out = folder / "gradebook"
    lines = (out / "gradebook.jsonl").read_text().splitlines()
    lost = [
        line for line in lines if (json.loads(line)["student"], json.loads(line)["exercise"]) == ("solution", NAMES[-1])
    ]
    kept = [line for line in lines if line not in lost]
    (out / "gradebook.jsonl").write_text("\n".join(kept) + "\n" + lost[0][: len(lost[0]) // 2])
    # Other limits mark what is graded again (and show that limits alone do not make a rerun grade anything).
    limits = Limits(load_seconds=11, question_seconds=7, submission_seconds=120, memory_bytes=2 * 1024**3)
    grade_folder(folder, built / "autograder", out, limits, jobs=1, regrade_students=["coin-flip", "exit-top"])
    return first, json.loads((out / "gradebook.json").read_text())


def _by_key(gradebook: dict) -> dict[tuple[str, str], dict]:
    return {(report["student"], report["exercise"]): report for report in gradebook["submissions"]}


def test_a_rerun_grades_only_the_lost_and_the_asked_for(regraded: tuple[dict, dict]) -> None:
    first, second = (_by_key(gradebook) for gradebook in regraded)
    assert set(first) == set(second)
    for key, report in second.items():
        if key in REGRADED:
            assert report["limits"]["question_seconds"] == 7, key
        else:
            assert report == first[key], key  # kept as it was, not graded again
    assert [row for row in regraded[1]["rows"] if (row["student"], row["exercise"]) not in REGRADED] == [
        row for row in regraded[0]["rows"] if (row["student"], row["exercise"]) not in REGRADED
    ]


def test_grading_twice_gives_the_same_result(regraded: tuple[dict, dict]) -> None:
    first, second = (_by_key(gradebook) for gradebook in regraded)
    for key in REGRADED:
        outcome = lambda report: [  # noqa: E731
            (question["status"], question["points"], [test["passed"] for test in question["tests"]])
            for question in report["questions"]
        ]
        assert outcome(second[key]) == outcome(first[key]), key
    coin = [
        test["passed"]
        for question in first[("coin-flip", "ch01-recurrence")]["questions"]
        for test in question["tests"]
    ]
    assert True in coin, "the coin never came up right: the check above proved nothing"
    assert False in coin, "the coin never came up wrong: the check above proved nothing"


def test_a_killed_run_keeps_what_it_graded_and_the_next_run_goes_on(built: Path, tmp_path: Path) -> None:
    """SIGKILL (no clean-up at all) while a notebook that never finishes loads; the rerun skips the graded one."""
    name = "ch01-recurrence"
    student = built / "student" / name / f"{name}.ipynb"
    solutions = _solutions(built / "autograder" / name, name)
    submissions, out = tmp_path / "submissions", tmp_path / "gradebook"
    for who, notebook in (
        ("alice", _fill(student, solutions)),
        ("zoe", _fill(student, solutions, ["while True:\n    pass"])),
    ):
        (submissions / who).mkdir(parents=True)
        (submissions / who / f"{name}.ipynb").write_text(json.dumps(notebook))
    command = [sys.executable, "-m", "grading", "grade", str(submissions), "--out", str(out), "--jobs", "1"]
    command += ["--autograders", str(built / "autograder")]
    run = subprocess.Popen(
        [*command, "--load-seconds", "300"], cwd=ROOT, stderr=subprocess.PIPE, start_new_session=True
    )
    deadline = time.monotonic() + 240
    while not (out / "gradebook.jsonl").is_file() or not (out / "gradebook.jsonl").read_text().strip():
        if run.poll() is not None:
            pytest.fail(f"the run ended before grading anything: {run.communicate()[1][-3000:]}")
        if time.monotonic() > deadline:
            os.killpg(run.pid, signal.SIGKILL)
            pytest.fail(f"nothing graded in 240 s: {run.communicate()[1][-3000:]}")
        time.sleep(0.2)
    os.killpg(run.pid, signal.SIGKILL)
    run.communicate()
    records = [json.loads(line) for line in (out / "gradebook.jsonl").read_text().splitlines()]
    assert [(record["student"], record["exercise"]) for record in records] == [("alice", name)]
    assert all(row["points"] == row["max_points"] for row in records[0]["rows"])
    with open(out / "gradebook.csv", newline="") as handle:
        assert {row["student"] for row in csv.DictReader(handle)} == {"alice"}
    assert (out / "feedback" / "alice" / f"{name}.md").is_file()
    rerun = subprocess.run([*command, "--load-seconds", "3"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "1 of 2 submissions already graded" in rerun.stderr, rerun.stderr
    assert f"zoe/{name}: timeout, every question" in rerun.stderr, rerun.stderr
    assert "1/1" in rerun.stderr, rerun.stderr  # the progress bar's count
    reports = _by_key(json.loads((out / "gradebook.json").read_text()))
    assert reports[("alice", name)] == {key: value for key, value in records[0].items() if key != "rows"}
    assert {question["status"] for question in reports[("zoe", name)]["questions"]} == {"timeout"}
