"""A character-level LSTM language model written with lax.scan: its gradients equal those of
the same model unrolled as a Python loop (float64, 1e-6), and SGD on it lowers the loss."""
from __future__ import annotations

import numpy as np
import pytest

import funcgrad
from funcgrad import core, grad, make_jaxpr, value_and_grad
from funcgrad import lax
from funcgrad import numpy as fnp
from funcgrad import random as fr
from funcgrad.tree_util import tree_leaves, tree_map

from primitive_harness import count_eqns


def make_corpus(seed: int = 0, sentences: int = 40) -> str:
    """Short sentences from a tiny grammar: a corpus with structure worth learning."""
    rng = np.random.default_rng(seed)
    subjects = ["the cat", "a dog", "my bird"]
    verbs = ["sees", "hears", "likes"]
    objects = ["the mat", "a bone", "seeds"]
    return " ".join(f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)}."
                    for _ in range(sentences))


CORPUS = make_corpus()
VOCAB = sorted(set(CORPUS))
V, E, H = len(VOCAB), 8, 16
CHAR_ID = {c: i for i, c in enumerate(VOCAB)}


def batches(text: str, steps: int, batch: int, seed: int = 1):
    """(inputs, targets): one-hot arrays of shape (steps, batch, V), float64."""
    ids = np.array([CHAR_ID[c] for c in text])
    starts = np.random.default_rng(seed).integers(0, len(ids) - steps - 1, batch)
    windows = np.stack([ids[s:s + steps + 1] for s in starts], axis=1)       # (steps + 1, batch)
    one_hot = np.eye(V)[windows]
    return one_hot[:-1], one_hot[1:]


def init_params(key) -> dict:
    k = fr.split(key, 3)
    scale = lambda fan_in: 1.0 / np.sqrt(fan_in)
    return {"embed": fr.normal(k[0], (V, E), np.float64) * scale(V),
            "w": fr.normal(k[1], (E + H, 4 * H), np.float64) * scale(E + H),
            "b": np.zeros(4 * H),
            "out": fr.normal(k[2], (H, V), np.float64) * scale(H),
            "out_b": np.zeros(V)}


def lstm_step(params, carry, x_t):
    """One LSTM step on a batch: x_t is one-hot (batch, V); returns the new (h, c), logits."""
    h, c = carry
    z = fnp.concatenate([x_t @ params["embed"], h], axis=1) @ params["w"] + params["b"]
    i, f, g, o = (z[:, k * H:(k + 1) * H] for k in range(4))
    sig = lambda v: 1.0 / (1.0 + fnp.exp(-v))
    c = sig(f + 1.0) * c + sig(i) * fnp.tanh(g)
    h = sig(o) * fnp.tanh(c)
    return (h, c), h @ params["out"] + params["out_b"]


def cross_entropy(logits, target):
    m = fnp.max(logits, axis=1, keepdims=True)
    log_z = fnp.log(fnp.sum(fnp.exp(logits - m), axis=1)) + m[:, 0]
    return fnp.mean(log_z - fnp.sum(logits * target, axis=1))


def loss_scan(params, inputs, targets):
    batch = inputs.shape[1]
    zeros = np.zeros((batch, H))

    def step(carry, xs):
        x_t, y_t = xs
        carry, logits = lstm_step(params, carry, x_t)
        return carry, cross_entropy(logits, y_t)

    _, losses = lax.scan(step, (zeros, zeros), (inputs, targets))
    return fnp.mean(losses)


def loss_unrolled(params, inputs, targets):
    batch = inputs.shape[1]
    carry = (np.zeros((batch, H)), np.zeros((batch, H)))
    losses = []
    for x_t, y_t in zip(inputs, targets):
        carry, logits = lstm_step(params, carry, x_t)
        losses.append(cross_entropy(logits, y_t))
    return sum(losses) / len(losses)


PARAMS = init_params(fr.key(0))
INPUTS, TARGETS = batches(CORPUS, steps=12, batch=4)


def test_scan_lstm_matches_unrolled_loop():
    v_scan, g_scan = value_and_grad(loss_scan)(PARAMS, INPUTS, TARGETS)
    v_loop, g_loop = value_and_grad(loss_unrolled)(PARAMS, INPUTS, TARGETS)
    assert abs(v_scan - v_loop) < 1e-12
    assert abs(v_scan - np.log(V)) < 0.5          # near-uniform predictions at initialisation
    for name in PARAMS:
        np.testing.assert_allclose(g_scan[name], g_loop[name], rtol=1e-6, atol=1e-10, err_msg=name)
        assert np.abs(g_scan[name]).max() > 0, name


def test_scan_lstm_backward_is_a_loop_not_unrolled():
    short = make_jaxpr(grad(loss_scan))(PARAMS, INPUTS, TARGETS)
    long_inputs, long_targets = batches(CORPUS, steps=48, batch=4)
    long = make_jaxpr(grad(loss_scan))(PARAMS, long_inputs, long_targets)
    core.check_jaxpr(short)
    assert count_eqns(long) == count_eqns(short)
    unrolled = make_jaxpr(grad(loss_unrolled))(PARAMS, long_inputs, long_targets)
    assert count_eqns(unrolled) > count_eqns(long)


def sgd(loss, params, steps: int, lr: float, data):
    step = jit_or_plain(value_and_grad(loss))
    history = []
    for _ in range(steps):
        value, g = step(params, *data)
        history.append(float(value))
        params = tree_map(lambda p, d: p - lr * d, params, g)
    return params, history


def jit_or_plain(f):
    jit = getattr(funcgrad, "jit", None)
    return jit(f) if jit is not None else f


def test_sgd_on_the_scan_lstm_lowers_the_loss():
    data = batches(CORPUS, steps=24, batch=8, seed=2)
    params, history = sgd(loss_scan, PARAMS, steps=40, lr=3.0, data=data)
    assert history[-1] < 0.7 * history[0], history
    assert all(np.isfinite(leaf).all() for leaf in tree_leaves(params))


def test_jitted_scan_lstm_matches_eager():
    jit = getattr(funcgrad, "jit", None)
    if jit is None:
        pytest.skip("funcgrad.jit is not available yet")
    v, g = value_and_grad(loss_scan)(PARAMS, INPUTS, TARGETS)
    vj, gj = jit(value_and_grad(loss_scan))(PARAMS, INPUTS, TARGETS)
    assert abs(v - vj) < 1e-12
    for name in PARAMS:
        np.testing.assert_allclose(gj[name], g[name], rtol=1e-10, atol=1e-12)
