"""The course's model families, as builders used by the CLI and the examples."""
from __future__ import annotations

from . import init
from .layers import (Activation, BatchNorm, Conv2D, Dense, Dropout, Flatten, GlobalAvgPool, MaxPool2D,
                     Sequential)


def linear_classifier(num_classes: int, weight_scale: float = 1e-3) -> Sequential:
    """Scores ``x W + b`` of flattened inputs: the course's softmax and SVM classifiers
    (which differ only in their loss), with small random weights."""
    return Sequential([Flatten(), Dense(num_classes, w_init=init.normal(weight_scale), name="linear")])


def mlp(num_classes: int, hidden: tuple[int, ...] = (512, 256), dropout: float = 0.3) -> Sequential:
    """Fully connected net: (affine - ReLU [- dropout]) per hidden layer, then affine; with
    ``hidden=(H,)`` and no dropout, the course's two-layer net. He-normal hidden weights."""
    layers = [Flatten()]
    for i, h in enumerate(hidden, 1):
        layers += [Dense(h, w_init="he_normal", name=f"fc{i}"), Activation("relu", name=f"relu{i}")]
        if dropout:
            layers.append(Dropout(dropout, name=f"dropout{i}"))
    layers.append(Dense(num_classes, name="out"))
    return Sequential(layers)


def cnn(num_classes: int, channels: tuple[int, int, int] = (32, 64, 128), dropout: float = 0.25
        ) -> Sequential:
    """conv3x3 - BN - ReLU - conv3x3 - BN - ReLU - maxpool2 - conv3x3 - BN - ReLU - global
    average pool - dropout - FC, on NCHW images (sized for the 8x8 digits: one pooling)."""
    c1, c2, c3 = channels
    return Sequential([
        Conv2D(c1, 3, name="conv1"), BatchNorm(name="bn1"), Activation("relu", name="relu1"),
        Conv2D(c2, 3, name="conv2"), BatchNorm(name="bn2"), Activation("relu", name="relu2"),
        MaxPool2D(2, name="pool"),
        Conv2D(c3, 3, name="conv3"), BatchNorm(name="bn3"), Activation("relu", name="relu3"),
        GlobalAvgPool(name="gap"), Dropout(dropout, name="dropout"), Dense(num_classes, name="out"),
    ])


BUILDERS = {"softmax": linear_classifier, "svm": linear_classifier, "mlp": mlp, "cnn": cnn}
MODELS = tuple(BUILDERS)


def build(name: str, num_classes: int) -> Sequential:
    """The model the CLI trains for ``--model name``."""
    if name not in BUILDERS:
        raise ValueError(f"unknown model {name!r}; choose from {MODELS}")
    return BUILDERS[name](num_classes)
