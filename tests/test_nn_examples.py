"""Smoke tests of funcgrad_nn/examples: each runs with small settings and shows what it is
for; the full default runs (each under a minute) are marked slow."""
import math
import subprocess
import sys

import pytest

from funcgrad_nn.examples import char_lstm, cnn, linear_classifiers, per_example_gradients, two_layer_net

EXAMPLES = ["linear_classifiers", "two_layer_net", "cnn", "char_lstm", "per_example_gradients"]


def test_linear_classifiers(capsys):
    results = linear_classifiers.main(["--epochs", "5", "--regs", "0"])
    assert results["softmax"] > 0.85 and results["svm"] > 0.85
    out = capsys.readouterr().out
    assert "initial loss 2.302" in out and "initial loss 9.000" in out


def test_two_layer_net():
    results = two_layer_net.main(["--epochs", "3", "--hidden", "32"])
    assert results["initial_loss"] == pytest.approx(math.log(10), abs=1e-3)
    assert results["loss_with_reg"] > results["initial_loss"]
    assert results["overfit_accuracy"] == 1.0
    assert results["test_accuracy"] > 0.85


def test_cnn_with_batch_norm_and_dropout(capsys):
    results = cnn.main(["--epochs", "2", "--channels", "4", "8"])
    assert results["train_loss"][1] < results["train_loss"][0]
    assert "eval mode is deterministic: True | train mode differs per dropout key: True" in capsys.readouterr().out


def test_char_lstm_learns_the_corpus():
    results = char_lstm.main(["--steps", "40", "--hidden", "32", "--length", "16"])
    first, last = results["losses"][0], sum(results["losses"][-5:]) / 5
    assert first == pytest.approx(math.log(results["vocab_size"]), abs=0.05)
    assert last < 0.6 * first
    assert len(results["sample"]) > 100


def test_per_example_gradients_match_a_loop():
    results = per_example_gradients.main(["--epochs", "1"])
    assert results["max_difference"] < 1e-5
    assert results["test_accuracy"] > 0.3


@pytest.mark.slow
@pytest.mark.parametrize("name", EXAMPLES)
def test_example_runs_by_default_in_under_a_minute(name):
    proc = subprocess.run([sys.executable, "-m", f"funcgrad_nn.examples.{name}"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "accuracy" in proc.stdout or "sample:" in proc.stdout
