"""The course's model families, as builders used by the CLI and examples."""
from __future__ import annotations

from . import init
from .layers import (BatchNorm, Conv2D, Dense, Dropout, Flatten, MaxPool2D, Relu, Sequential)


def softmax_classifier(num_classes: int, weight_scale: float = 1e-3) -> Sequential:
    """A linear classifier on flattened inputs (the course's softmax / SVM classifier)."""
    return Sequential([Flatten(), Dense(num_classes, w_init=init.normal(weight_scale), name="linear")])


def mlp(num_classes: int, hidden: tuple[int, ...] = (256,), dropout: float = 0.0) -> Sequential:
    """Affine - ReLU (- dropout) blocks, then an affine output layer (the course's FC net)."""
    layers = [Flatten()]
    for i, h in enumerate(hidden):
        layers += [Dense(h, w_init="he_normal", name=f"fc{i + 1}"), Relu(name=f"relu{i + 1}")]
        if dropout:
            layers.append(Dropout(dropout, name=f"dropout{i + 1}"))
    layers.append(Dense(num_classes, name="out"))
    return Sequential(layers)


def cnn(num_classes: int, channels: tuple[int, int] = (32, 64), hidden: int = 128,
        dropout: float = 0.25) -> Sequential:
    """conv-BN-ReLU x2 - maxpool - conv-BN-ReLU - maxpool - FC-ReLU-dropout - FC."""
    c1, c2 = channels
    return Sequential([
        Conv2D(c1, 3, name="conv1"), BatchNorm(name="bn1"), Relu(name="relu1"),
        Conv2D(c1, 3, name="conv2"), BatchNorm(name="bn2"), Relu(name="relu2"),
        MaxPool2D(2, name="pool1"),
        Conv2D(c2, 3, name="conv3"), BatchNorm(name="bn3"), Relu(name="relu3"),
        MaxPool2D(2, name="pool2"),
        Flatten(), Dense(hidden, w_init="he_normal", name="fc1"), Relu(name="relu4"),
        Dropout(dropout, name="dropout"), Dense(num_classes, name="out"),
    ])


MODELS = ("softmax", "svm", "mlp", "cnn")
