"""Command line: ``python -m funcgrad_nn train`` (also the ``funcgrad-train`` script, where
the ``train`` command is implied).

Trains one of the course's models on the bundled digits (default), or on MNIST / CIFAR-10
files in ``--data-dir``, printing per-epoch metrics and a final summary line with the test
accuracy. ``--out DIR`` receives ``checkpoint.npz`` and ``metrics.csv`` after every epoch
and ``curves.png`` at the end (when matplotlib is installed); ``--resume`` continues from a
checkpoint exactly where it stopped. Errors are one line on stderr and a non-zero exit
status (2 for bad arguments, 1 for anything else).
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from typing import NamedTuple

from funcgrad import random

from . import checkpoint, datasets, losses, models, optim, schedules
from .checkpoint import CheckpointError
from .data import random_crop, train_val_split
from .datasets import DatasetError
from .train import TrainState, evaluate, fit, init_train_state, make_eval_step, steps_per_epoch

COMMANDS = ("train",)


class Recipe(NamedTuple):
    """Training hyperparameters; each model's defaults are tuned on the bundled digits."""
    optimizer: str
    lr: float
    schedule: str        # "constant", or "cosine" decay to 0 over the run
    epochs: int
    batch_size: int
    weight_decay: float  # the course's L2 term on weights
    augment: int         # random shifts of up to this many pixels (0: none)


RECIPES = {
    "softmax": Recipe("adam", 0.02, "constant", 100, 64, 0.0, 0),
    "svm": Recipe("adam", 0.02, "cosine", 100, 64, 0.0, 0),
    "mlp": Recipe("adam", 2e-3, "constant", 40, 64, 0.0, 0),
    "cnn": Recipe("adam", 3e-3, "cosine", 20, 64, 0.0, 1),
}
SCHEDULES = ("constant", "cosine")


class CLIError(Exception):
    """An error reported to the user as one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _int_at_least(low: int):
    def parse(s: str) -> int:
        try:
            v = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {s!r}") from None
        if v < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {s}")
        return v
    return parse


def _float_at_least(low: float, strict: bool):
    def parse(s: str) -> float:
        try:
            v = float(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {s!r}") from None
        if not (v > low if strict else v >= low):
            raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {low:g}, got {s}")
        return v
    return parse


def build_parser(prog: str = "python -m funcgrad_nn", train_prog: str | None = None
                 ) -> argparse.ArgumentParser:
    """The parser; ``train_prog`` names the train command in messages (default
    ``"<prog> train"``)."""
    parser = _Parser(prog=prog, description="funcgrad_nn: train the course's models")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    defaults = "\n".join(f"  {name:8s}" + ", ".join(f"{k} {v}" for k, v in r._asdict().items())
                          for name, r in RECIPES.items())
    t = sub.add_parser("train", prog=train_prog, help="train a model and report its test accuracy",
                       description="Train a model on the bundled digits (or MNIST / CIFAR-10 files) "
                                   "and report its test accuracy.",
                       epilog=f"defaults per model (tuned on the bundled digits):\n{defaults}",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("--model", choices=models.MODELS, help="default: cnn, or the resumed checkpoint's")
    t.add_argument("--optimizer", choices=sorted(optim.OPTIMIZERS))
    t.add_argument("--lr", type=_float_at_least(0, strict=True), help="learning rate")
    t.add_argument("--schedule", choices=SCHEDULES, help="learning-rate schedule")
    t.add_argument("--epochs", type=_int_at_least(1), help="total epochs (a resumed run counts its "
                                                        "earlier epochs)")
    t.add_argument("--batch-size", type=_int_at_least(1))
    t.add_argument("--weight-decay", type=_float_at_least(0, strict=False),
                   help="L2 regularization strength (0.5 * reg * sum(w**2))")
    t.add_argument("--augment", type=_int_at_least(0), metavar="PIXELS",
                   help="train on images shifted randomly by up to PIXELS (0: off)")
    t.add_argument("--seed", type=int, default=0, help="init, shuffling and dropout seed")
    t.add_argument("--data", choices=datasets.DATASETS, default="digits")
    t.add_argument("--data-dir", help="directory with the MNIST or CIFAR-10 files")
    t.add_argument("--out", help="directory for checkpoint.npz, metrics.csv and curves.png "
                                 "(default with --resume: the checkpoint's directory)")
    t.add_argument("--resume", help="checkpoint file, or a directory holding checkpoint.npz")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


# ---------------------------------------------------------------------------------------------
# Data, progress, outputs


def load_data(data: str, data_dir: str | None, seed: int):
    """``(train, val, test)`` pairs. Digits: a fixed 20% test split (seed 0), then 10% of the
    rest for validation (``seed``); MNIST/CIFAR-10: their test set, and 10% validation."""
    if data == "digits":
        if data_dir:
            raise CLIError("--data-dir is only for --data mnist or cifar10")
        return datasets.digits_splits(seed)
    if not data_dir:
        raise CLIError(f"--data {data} needs --data-dir")
    rest, test = (datasets.load_mnist if data == "mnist" else datasets.load_cifar10)(data_dir)
    train, val = train_val_split(*rest, 0.1, seed=seed)
    return train, val, test


def progress_bar(quiet: bool):
    """tqdm when installed, else :func:`simple_bar` when stderr is a terminal; None with
    ``quiet``."""
    if quiet:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return simple_bar if sys.stderr.isatty() else None
    return lambda it, total, desc: tqdm(it, total=total, desc=desc, leave=False, file=sys.stderr)


def simple_bar(iterable, total: int, desc: str, width: int = 30):
    """Yield from ``iterable``, drawing ``desc [####....] i/total`` on stderr as it goes;
    erase the bar at the end."""
    line = ""
    for i, item in enumerate(iterable, 1):
        yield item
        done = width * i // max(total, 1)
        line = f"\r{desc} [{'#' * done}{'.' * (width - done)}] {i}/{total}"
        sys.stderr.write(line)
        sys.stderr.flush()
    sys.stderr.write("\r" + " " * (len(line) - 1) + "\r")
    sys.stderr.flush()


METRIC_FIELDS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "seconds")


def write_metrics(path: str, history: list[dict]) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, METRIC_FIELDS)
        w.writeheader()
        w.writerows(history)
    os.replace(tmp, path)


def plot_curves(path: str, history: list[dict]) -> bool:
    """Loss and accuracy per epoch as a PNG; False (with a notice) without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: skipping the plot (pip install matplotlib)",
              file=sys.stderr)
        return False
    epochs = [m["epoch"] for m in history]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, what in zip(axes, ("loss", "acc")):
        ax.plot(epochs, [m[f"train_{what}"] for m in history], label="train")
        ax.plot(epochs, [m[f"val_{what}"] for m in history], label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy" if what == "acc" else "loss")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


# ---------------------------------------------------------------------------------------------
# train


def make_optimizer(recipe: Recipe, num_train: int) -> optim.GradientTransformation:
    """The recipe's optimizer; a cosine schedule spans all of ``recipe.epochs``."""
    lr = recipe.lr
    if recipe.schedule == "cosine":
        lr = schedules.cosine_decay(lr, recipe.epochs * steps_per_epoch(num_train, recipe.batch_size))
    return optim.OPTIMIZERS[recipe.optimizer](lr)


def shift_augmentation(pixels: int):
    """Random shifts by up to ``pixels`` (a random crop of the zero-padded image), or None."""
    return (lambda key, x: random_crop(key, x, pixels)) if pixels else None


def resolve_run(args) -> tuple[str, Recipe, str | None, dict]:
    """``(model name, recipe, checkpoint to resume or None, its metadata)``: the model's
    recipe, overridden by the resumed checkpoint's, overridden by the arguments given."""
    path, meta = None, {}
    if args.resume:
        path = os.path.join(args.resume, "checkpoint.npz") if os.path.isdir(args.resume) else args.resume
        _, meta = checkpoint.load(path)
        if args.model and meta.get("model", args.model) != args.model:
            raise CLIError(f"{path} holds a {meta['model']} model, not --model {args.model}")
    name = args.model or meta.get("model", "cnn")
    if name not in RECIPES:
        raise CLIError(f"{path} holds an unknown model {name!r}")
    recipe = RECIPES[name]
    saved = meta.get("recipe", {})
    recipe = recipe._replace(**{f: saved[f] for f in recipe._fields if f in saved})
    recipe = recipe._replace(**{f: getattr(args, f) for f in recipe._fields
                                if getattr(args, f) is not None})
    return name, recipe, path, meta


def train_command(args) -> int:
    name, recipe, resume_path, meta = resolve_run(args)
    out = args.out or (os.path.dirname(os.path.abspath(resume_path)) if resume_path else None)
    train_data, val_data, test_data = load_data(args.data, args.data_dir, args.seed)
    model = models.build(name, num_classes=int(max(train_data[1].max(), test_data[1].max())) + 1)
    loss_fn = losses.multiclass_svm if name == "svm" else losses.softmax_cross_entropy
    optimizer = make_optimizer(recipe, len(train_data[0]))
    ts = init_train_state(model, optimizer, random.key(args.seed), train_data[0][:recipe.batch_size])
    history = []
    if resume_path:
        ts, _ = checkpoint.restore(resume_path, ts)
        history = list(meta.get("history", []))
        if len(history) >= recipe.epochs:
            raise CLIError(f"{resume_path} is at epoch {len(history)} already; pass --epochs above "
                           "that to train further")
        print(f"resumed from {resume_path} at epoch {len(history)}")
    if out:
        os.makedirs(out, exist_ok=True)

    def on_epoch(m, ts: TrainState):
        print(f"epoch {m.epoch:3d}  train loss {m.train_loss:.4f} acc {m.train_acc:.4f}  "
              f"val loss {m.val_loss:.4f} acc {m.val_acc:.4f}  ({m.seconds:.2f} s)", flush=True)
        history.append(m._asdict())
        if out:
            checkpoint.save(os.path.join(out, "checkpoint.npz"), ts, model=name,
                            recipe=recipe._asdict(), seed=args.seed, data=args.data, history=history)
            write_metrics(os.path.join(out, "metrics.csv"), history)

    print(f"training {name} on {args.data} ({len(train_data[0])} train / {len(val_data[0])} val / "
          f"{len(test_data[0])} test): " + ", ".join(f"{k} {v}" for k, v in recipe._asdict().items()),
          flush=True)
    t0 = time.perf_counter()
    ts, run = fit(model, loss_fn, optimizer, ts, train_data, val_data, epochs=recipe.epochs,
                  batch_size=recipe.batch_size, seed=args.seed, weight_decay=recipe.weight_decay,
                  augment=shift_augmentation(recipe.augment), start_epoch=len(history),
                  progress=progress_bar(args.quiet), on_epoch=on_epoch)
    seconds = time.perf_counter() - t0
    test_loss, test_acc = evaluate(make_eval_step(model, loss_fn), ts.params, ts.state, *test_data)
    if out:
        plot_curves(os.path.join(out, "curves.png"), history)
    print(f"test accuracy {test_acc:.4f}  test loss {test_loss:.4f}  ({name}: {len(run)} epochs in "
          f"{seconds:.1f} s, {seconds / len(run):.2f} s/epoch)" + (f"; outputs in {out}" if out else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the command line and return the exit status: 0, 1 for errors, 2 for bad
    arguments. Without a command, ``train`` is implied (``funcgrad-train --model mlp``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    script = os.path.basename(sys.argv[0]) == "funcgrad-train"
    if script or not argv or argv[0] not in COMMANDS + ("-h", "--help"):
        argv.insert(0, "train")
    try:
        parser = build_parser("funcgrad-train", "funcgrad-train") if script else build_parser()
        args = parser.parse_args(argv)
        return train_command(args)
    except SystemExit as e:                          # argparse: --help, or a usage error
        return e.code if isinstance(e.code, int) else 1
    except (CLIError, CheckpointError, DatasetError, OSError) as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
