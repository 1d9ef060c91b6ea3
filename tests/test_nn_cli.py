"""The training command line: outputs, exact resumption, progress bars, the optional plot,
and one-line errors with non-zero exit codes (in process via ``main`` and as a subprocess).
Runs use the linear models and a few epochs to stay fast."""
from __future__ import annotations

import csv
import gzip
import importlib.metadata
import os
import subprocess
import sys

import numpy as np
import pytest

from funcgrad_nn import __main__ as cli, checkpoint

FAST = ["--model", "softmax", "--epochs", "2", "--quiet"]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(*argv: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "funcgrad_nn", *argv], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO)


def _summary(out: str) -> float:
    line = out.strip().splitlines()[-1]
    assert line.startswith("test accuracy "), line
    return float(line.split()[2])


def test_train_writes_checkpoint_and_metrics(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", *FAST, "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    assert 0.5 < _summary(stdout) <= 1.0
    assert "epoch   2" in stdout and f"outputs in {out}" in stdout
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert set(rows[0]) == set(cli.METRIC_FIELDS)
    assert float(rows[1]["train_loss"]) < float(rows[0]["train_loss"])
    tree, meta = checkpoint.load(out / "checkpoint.npz")
    assert meta["model"] == "softmax" and len(meta["history"]) == 2
    assert meta["recipe"]["optimizer"] == "adam" and int(tree["step"]) == 2 * (1295 // 64)
    assert tree["params"]["linear"]["w"].shape == (64, 10)


def test_resume_continues_exactly(tmp_path, capsys):
    """Two epochs in one run equal one epoch, then a resumed second epoch (batches and
    dropout keys depend only on seed, epoch and step)."""
    straight, split = tmp_path / "straight", tmp_path / "split"
    args = ["--model", "mlp", "--quiet", "--seed", "3"]
    assert cli.main([*args, "--epochs", "2", "--out", str(straight)]) == 0
    assert cli.main([*args, "--epochs", "1", "--out", str(split)]) == 0
    assert cli.main(["--resume", str(split), "--epochs", "2", "--quiet", "--seed", "3"]) == 0
    assert "resumed from" in capsys.readouterr().out
    a, meta_a = checkpoint.load(straight / "checkpoint.npz")
    b, meta_b = checkpoint.load(split / "checkpoint.npz")
    for layer in ("fc1", "out"):
        np.testing.assert_array_equal(a["params"][layer]["w"], b["params"][layer]["w"])
    assert [m["train_loss"] for m in meta_a["history"]] == [m["train_loss"] for m in meta_b["history"]]
    with open(split / "metrics.csv") as f:
        assert len(list(csv.DictReader(f))) == 2


def test_resume_of_a_finished_run_and_of_another_model(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main([*FAST, "--out", str(out)]) == 0
    capsys.readouterr()
    assert cli.main(["--resume", str(out / "checkpoint.npz"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "is at epoch 2 already; pass --epochs above that" in err and len(err.splitlines()) == 1
    assert cli.main(["--resume", str(out), "--model", "cnn", "--epochs", "3"]) == 1
    assert "holds a softmax model, not --model cnn" in capsys.readouterr().err


def test_errors_are_one_line_with_exit_status_1(tmp_path, capsys):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a checkpoint")
    np.save(tmp_path / "array.npy", np.ones(3))
    cases = {
        ("--resume", str(bad)): "corrupt checkpoint",
        ("--resume", str(tmp_path / "array.npy")): "not a funcgrad checkpoint",
        ("--resume", str(tmp_path / "missing.npz")): "checkpoint not found",
        ("--data", "mnist", "--data-dir", str(tmp_path / "nope")): "MNIST directory not found",
        ("--data", "cifar10"): "--data cifar10 needs --data-dir",
        ("--out", str(bad)): "bad.npz",                               # a file, not a directory
    }
    for argv, message in cases.items():
        assert cli.main([*FAST, *argv]) == 1, argv
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err, (argv, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_bad_arguments_exit_2_with_one_line(capsys):
    for argv, message in {("--lr", "-1"): "must be > 0", ("--epochs", "0"): "must be >= 1",
                          ("--model", "resnet"): "invalid choice: 'resnet'",
                          ("--batch-size", "x"): "expected an integer, got 'x'",
                          ("--frobnicate",): "unrecognized arguments"}.items():
        assert cli.main(["train", *argv]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, (argv, err)
        assert err.startswith("python -m funcgrad_nn")


@pytest.mark.parametrize("argv,code,message", [
    (["train", "--lr", "0"], 2, "argument --lr: must be > 0"),
    (["train", "--resume", "nonexistent.npz"], 1, "error: checkpoint not found: nonexistent.npz"),
    (["train", "--data", "mnist", "--data-dir", "/nonexistent"], 1, "MNIST directory not found"),
])
def test_exit_codes_in_a_subprocess(argv, code, message):
    proc = run(*argv)
    assert proc.returncode == code
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr


def test_corrupt_checkpoint_in_a_subprocess(tmp_path):
    path = tmp_path / "checkpoint.npz"
    path.write_bytes(b"PK\x03\x04 truncated zip")
    proc = run("train", "--resume", str(tmp_path), "--quiet")
    assert proc.returncode == 1 and proc.stderr.startswith("error: corrupt checkpoint")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_help_lists_the_options():
    proc = run("train", "--help")
    assert proc.returncode == 0
    for option in ("--model", "--optimizer", "--lr", "--epochs", "--batch-size", "--seed", "--data",
                   "--data-dir", "--out", "--resume", "{softmax,svm,mlp,cnn}"):
        assert option in proc.stdout


def test_console_script():
    """``funcgrad-train`` is declared as an entry point; where installed, it trains with the
    ``train`` command implied."""
    (entry,) = [e for e in importlib.metadata.entry_points(group="console_scripts")
                if e.name == "funcgrad-train"]
    assert entry.value == "funcgrad_nn.__main__:main" and entry.load() is cli.main
    script = os.path.join(os.path.dirname(sys.executable), "funcgrad-train")
    if not os.path.exists(script):
        pytest.skip("funcgrad-train is not installed next to this interpreter")
    proc = subprocess.run([script, "--epochs", "0"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and proc.stderr.startswith("funcgrad-train: error: argument --epochs")
    proc = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "--model" in proc.stdout


def test_mnist_files_end_to_end(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for split, n in (("train", 40), ("t10k", 10)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        for name, arr in ((f"{split}-images-idx3-ubyte.gz", images), (f"{split}-labels-idx1-ubyte.gz", labels)):
            header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
            with gzip.open(tmp_path / name, "wb") as f:
                f.write(header + arr.tobytes())
    assert cli.main(["--model", "softmax", "--epochs", "1", "--batch-size", "16", "--quiet",
                     "--data", "mnist", "--data-dir", str(tmp_path)]) == 0
    assert "training softmax on mnist (39 train / 1 val / 10 test)" in capsys.readouterr().out


def test_simple_progress_bar(capsys):
    assert list(cli.simple_bar(iter(range(4)), 4, "epoch 1/1", width=8)) == [0, 1, 2, 3]
    err = capsys.readouterr().err
    assert "\repoch 1/1 [##......] 1/4" in err and "\repoch 1/1 [########] 4/4" in err
    assert err.endswith("\r")                                         # the bar is erased


def test_progress_bar_choice(monkeypatch):
    assert cli.progress_bar(quiet=True) is None
    monkeypatch.setitem(sys.modules, "tqdm", None)                    # as if not installed
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert cli.progress_bar(quiet=False) is cli.simple_bar
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    assert cli.progress_bar(quiet=False) is None                      # no bar in logs


def test_plot_is_skipped_with_a_notice_without_matplotlib(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    history = [dict(epoch=1, train_loss=1.0, train_acc=0.5, val_loss=1.1, val_acc=0.4, seconds=1.0)]
    assert cli.plot_curves(str(tmp_path / "curves.png"), history) is False
    assert "matplotlib is not installed" in capsys.readouterr().err
    assert not (tmp_path / "curves.png").exists()


def test_plot_is_written_with_matplotlib(tmp_path):
    pytest.importorskip("matplotlib")
    history = [dict(epoch=e, train_loss=1.0 / e, train_acc=0.5, val_loss=1.1 / e, val_acc=0.4, seconds=1.0)
               for e in (1, 2, 3)]
    assert cli.plot_curves(str(tmp_path / "curves.png"), history) is True
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
