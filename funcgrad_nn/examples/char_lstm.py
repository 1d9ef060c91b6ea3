"""A character-level LSTM language model on a generated corpus, trained with ``lax.scan``
(the ``RNN`` layer traces one LSTM step, whatever the sequence length) and sampled with a
second scan.

The corpus is sentences from a small grammar, so a model that learned something writes
grammatical sentences; the loss starts at ln(vocabulary size)::

    python -m funcgrad_nn.examples.char_lstm [--steps 200] [--hidden 64]
"""
from __future__ import annotations

import argparse
import math

import numpy as np

import funcgrad
import funcgrad.numpy as fnp
from funcgrad import lax, random
from funcgrad_nn import losses, optim
from funcgrad_nn.layers import RNN, Dense, Embedding, LSTMCell, Sequential


def make_corpus(sentences: int = 400, seed: int = 0) -> str:
    """Sentences "<subject> <verb> <object>." from a tiny grammar."""
    rng = np.random.default_rng(seed)
    subjects = ["the cat", "a dog", "my bird", "the old fox"]
    verbs = ["sees", "hears", "likes", "chases"]
    objects = ["the mat", "a bone", "seeds", "the red ball"]
    return " ".join(f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)}."
                    for _ in range(sentences))


def language_model(vocab: int, hidden: int, embed: int = 16) -> Sequential:
    """ids (N, T) -> embeddings (N, T, E) -> LSTM (N, T, H) -> next-character logits (N, T, V)."""
    return Sequential([Embedding(vocab, embed, name="embed"), RNN(LSTMCell(hidden), name="lstm"),
                       Dense(vocab, name="out")])


def windows(ids: np.ndarray, length: int, batch: int, rng: np.random.Generator):
    """A batch of ``(inputs, targets)``: random windows of the text and the same shifted by one."""
    starts = rng.integers(0, len(ids) - length - 1, batch)
    w = np.stack([ids[s:s + length + 1] for s in starts])
    return w[:, :-1], w[:, 1:]


def sampler(model: Sequential, hidden: int, length: int):
    """``sample(params, first_id, key) -> ids (length,)``: feed each sampled character back
    in, one LSTM step at a time, inside one ``lax.scan`` (one jitted call)."""
    cell = model.layers[1].cell

    @funcgrad.jit
    def sample(params, first, key):
        def step(carry, key_t):
            h, c, prev = carry
            x = fnp.take(params["embed"]["table"], prev[None], axis=0)        # (1, E)
            (h, c), out = cell.step(params["lstm"], (h, c), x)
            logits = out @ params["out"]["w"] + params["out"]["b"]
            nxt = random.categorical(key_t, logits[0])
            return (h, c, nxt), nxt

        zeros = fnp.zeros((1, hidden), np.float32)
        _, ids = lax.scan(step, (zeros, zeros, first), random.split(key, length))
        return ids

    return sample


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--length", type=int, default=32, help="training sequence length")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    text = make_corpus()
    vocab = sorted(set(text))
    ids = np.array([vocab.index(ch) for ch in text], np.int32)
    rng = np.random.default_rng(0)

    model = language_model(len(vocab), args.hidden)
    x0, _ = windows(ids, args.length, args.batch_size, rng)
    params, state = model.init(random.key(0), x0)
    opt = optim.chain(optim.clip_by_global_norm(5.0), optim.adam(1e-2))
    opt_state = opt.init(params)

    def loss_fn(p, x, y):
        logits, _ = model.apply(p, state, x)
        return losses.softmax_cross_entropy(logits, y)

    @funcgrad.jit
    def step(p, s, x, y):
        loss, grads = funcgrad.value_and_grad(loss_fn)(p, x, y)
        updates, s = opt.update(grads, s, p)
        return optim.apply_updates(p, updates), s, loss

    history = []
    for i in range(args.steps):
        params, opt_state, loss = step(params, opt_state, *windows(ids, args.length, args.batch_size, rng))
        history.append(float(loss))
        if i % max(args.steps // 6, 1) == 0 or i == args.steps - 1:
            print(f"step {i:4d}: loss {history[-1]:.4f}")
    print(f"initial loss {history[0]:.4f} (ln {len(vocab)} = {math.log(len(vocab)):.4f}), "
          f"final {np.mean(history[-20:]):.4f}")
    # Start after a full stop, so the sample begins a sentence.
    sample_ids = sampler(model, args.hidden, 120)(params, np.int32(vocab.index(".")), random.key(1))
    sample = "".join(vocab[i] for i in np.asarray(sample_ids)).strip()
    print("sample:", sample)
    return {"losses": history, "sample": sample, "vocab_size": len(vocab)}


if __name__ == "__main__":
    main()
