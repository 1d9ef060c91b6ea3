"""Command line: ``python -m funcgrad_nn train`` (also the ``funcgrad-train`` script).

Trains a model on the bundled digits by default, printing per-epoch metrics and a final
summary with the test accuracy; writes a checkpoint, a metrics CSV and (with matplotlib) a
loss/accuracy plot to ``--out``. Errors are one line and a non-zero exit status.
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import time

import numpy as np

DEFAULTS = {  # model -> (optimizer, learning rate, epochs, batch size)
    "softmax": ("adam", 0.02, 60, 64),
    "svm": ("adam", 0.01, 60, 64),
    "mlp": ("adam", 2e-3, 40, 64),
    "cnn": ("adam", 2e-3, 15, 64),
}


class CLIError(Exception):
    """An error reported to the user as one line."""


def _positive_int(s: str) -> int:
    v = int(s)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {s}")
    return v


def _positive_float(s: str) -> float:
    v = float(s)
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {s}")
    return v


def build_parser() -> argparse.ArgumentParser:
    from .models import MODELS
    from .optim import OPTIMIZERS
    parser = argparse.ArgumentParser(prog="python -m funcgrad_nn",
                                     description="funcgrad_nn: train the course's models")
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a model and report test accuracy")
    t.add_argument("--model", choices=MODELS, default="cnn")
    t.add_argument("--optimizer", choices=sorted(OPTIMIZERS), help="default depends on the model")
    t.add_argument("--lr", type=_positive_float, help="learning rate (default depends on the model)")
    t.add_argument("--epochs", type=_positive_int)
    t.add_argument("--batch-size", type=_positive_int)
    t.add_argument("--weight-decay", type=float, default=0.0, help="L2 regularization strength")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--data", choices=("digits", "mnist", "cifar10"), default="digits")
    t.add_argument("--data-dir", help="directory with the MNIST/CIFAR-10 files")
    t.add_argument("--out", help="directory for checkpoint.npz, metrics.csv and curves.png")
    t.add_argument("--resume", help="checkpoint file (or --out directory) to continue from")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def load_data(args):
    from . import datasets
    from .data import train_val_split
    if args.data == "digits":
        x, y = datasets.load_digits()
        (x_rest, y_rest), (x_test, y_test) = train_val_split(x, y, 0.2, seed=0)
    else:
        if not args.data_dir:
            raise CLIError(f"--data {args.data} needs --data-dir")
        loader = datasets.load_mnist if args.data == "mnist" else datasets.load_cifar10
        (x_rest, y_rest), (x_test, y_test) = loader(args.data_dir)
    (x_train, y_train), (x_val, y_val) = train_val_split(x_rest, y_rest, 0.1, seed=args.seed)
    return x_train, y_train, x_val, y_val, x_test, y_test


def progress_bar(quiet: bool):
    if quiet:
        return None
    try:
        from tqdm import tqdm

        return lambda it, total, desc: tqdm(it, total=total, desc=desc, leave=False, file=sys.stderr)
    except ImportError:
        return _simple_bar


def _simple_bar(iterable, total: int, desc: str):
    width = 30
    for i, item in enumerate(iterable, 1):
        yield item
        done = int(width * i / max(total, 1))
        sys.stderr.write(f"\r{desc} [{'#' * done}{'.' * (width - done)}] {i}/{total}")
        sys.stderr.flush()
    sys.stderr.write("\r" + " " * (len(desc) + width + 20) + "\r")


def write_metrics(path: str, history) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", "train_loss", "train_acc", "val_loss", "val_acc", "seconds"])
        for m in history:
            w.writerow([m.epoch, f"{m.train_loss:.6f}", f"{m.train_acc:.6f}", f"{m.val_loss:.6f}",
                        f"{m.val_acc:.6f}", f"{m.seconds:.3f}"])


def plot_curves(path: str, history) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: skipping the plot (pip install matplotlib)", file=sys.stderr)
        return False
    epochs = [m.epoch for m in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.plot(epochs, [m.train_loss for m in history], label="train")
    a.plot(epochs, [m.val_loss for m in history], label="validation")
    a.set_xlabel("epoch"), a.set_ylabel("loss"), a.legend()
    b.plot(epochs, [m.train_acc for m in history], label="train")
    b.plot(epochs, [m.val_acc for m in history], label="validation")
    b.set_xlabel("epoch"), b.set_ylabel("accuracy"), b.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def train_command(args) -> int:
    from funcgrad import random

    from . import checkpoint, losses, models, optim
    from .train import TrainState, evaluate, fit, make_eval_step

    opt_name, lr, epochs, batch_size = DEFAULTS[args.model]
    opt_name = args.optimizer or opt_name
    lr = args.lr or lr
    epochs = args.epochs or epochs
    batch_size = args.batch_size or batch_size

    x_train, y_train, x_val, y_val, x_test, y_test = load_data(args)
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    builders = {"softmax": models.softmax_classifier, "svm": models.softmax_classifier,
                "mlp": models.mlp, "cnn": models.cnn}
    model = builders[args.model](num_classes)
    loss_fn = losses.multiclass_svm if args.model == "svm" else losses.softmax_cross_entropy
    optimizer = optim.OPTIMIZERS[opt_name](lr)

    params, state = model.init(random.key(args.seed), x_train[:batch_size])
    train = TrainState(params, state, optimizer.init(params), 0)
    start_epoch = 0
    if args.resume:
        path = os.path.join(args.resume, "checkpoint.npz") if os.path.isdir(args.resume) else args.resume
        template = {"params": train.params, "state": train.state, "opt_state": train.opt_state,
                    "step": np.int64(0)}
        restored, meta = checkpoint.restore(path, template)
        train = TrainState(restored["params"], restored["state"], restored["opt_state"], int(restored["step"]))
        start_epoch = int(meta.get("epoch", 0))
        print(f"resumed from {path} at epoch {start_epoch}")
        if start_epoch >= epochs:
            raise CLIError(f"the checkpoint is already at epoch {start_epoch} (>= --epochs {epochs})")

    if args.out:
        os.makedirs(args.out, exist_ok=True)

    def on_epoch(m, ts):
        print(f"epoch {m.epoch:3d}  train loss {m.train_loss:.4f} acc {m.train_acc:.4f}  "
              f"val loss {m.val_loss:.4f} acc {m.val_acc:.4f}  ({m.seconds:.2f} s)", flush=True)
        if args.out:
            checkpoint.save(os.path.join(args.out, "checkpoint.npz"),
                            {"params": ts.params, "state": ts.state, "opt_state": ts.opt_state,
                             "step": np.int64(ts.step)},
                            epoch=m.epoch, model=args.model, optimizer=opt_name, lr=lr)

    print(f"training {args.model} on {args.data} ({len(x_train)} train / {len(x_val)} val / "
          f"{len(x_test)} test) with {opt_name} lr={lr}, {epochs} epochs, batch {batch_size}")
    t0 = time.perf_counter()
    train, history = fit(model, loss_fn, optimizer, train, x_train, y_train, x_val, y_val,
                         epochs=epochs, batch_size=batch_size, seed=args.seed,
                         weight_decay=args.weight_decay, progress=progress_bar(args.quiet),
                         on_epoch=on_epoch, start_epoch=start_epoch)
    total = time.perf_counter() - t0
    test_loss, test_acc = evaluate(make_eval_step(model, loss_fn), train.params, train.state, x_test, y_test)
    if args.out and history:
        write_metrics(os.path.join(args.out, "metrics.csv"), history)
        plot_curves(os.path.join(args.out, "curves.png"), history)
    per_epoch = total / max(len(history), 1)
    print(f"test accuracy {test_acc:.4f}  test loss {test_loss:.4f}  ({args.model}, {len(history)} epochs, "
          f"{total:.1f} s, {per_epoch:.2f} s/epoch)")
    return 0


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .checkpoint import CheckpointError
    from .datasets import DatasetError
    try:
        if args.command == "train":
            return train_command(args)
    except (CLIError, CheckpointError, DatasetError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
