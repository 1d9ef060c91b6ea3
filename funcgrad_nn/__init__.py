"""funcgrad_nn: stateless layers, losses, initializers, optimizers and training on funcgrad.

Layers hold hyperparameters only; parameters, layer state (batch-norm statistics) and
optimizer state are explicit pytrees (nested dicts keyed by layer name)::

    model = Sequential([Flatten(), Dense(10)])
    params, state = model.init(funcgrad.random.key(0), x)
    logits, state = model.apply(params, state, x, train=True, rng=key)

``python -m funcgrad_nn train`` trains the course's models on the bundled digits.
"""
from . import checkpoint, data, datasets, init, layers, losses, models, optim, schedules, train
from .layers import (Activation, AvgPool2D, BatchNorm, Cell, Conv2D, ConvTranspose2D, Dense,
                     Dropout, Embedding, Flatten, GlobalAvgPool, GroupNorm, GRUCell, Lambda,
                     LayerNorm, Linear, LSTMCell, MaxPool2D, Module, Residual, RNN, RNNCell,
                     Sequential, maxout)
from .optim import apply_updates, chain

__all__ = ["checkpoint", "data", "datasets", "init", "layers", "losses", "models", "optim",
           "schedules", "train", "Activation", "AvgPool2D", "BatchNorm", "Cell", "Conv2D",
           "ConvTranspose2D", "Dense", "Dropout", "Embedding", "Flatten", "GlobalAvgPool",
           "GroupNorm", "GRUCell", "Lambda", "LayerNorm", "Linear", "LSTMCell", "MaxPool2D",
           "Module", "Residual", "RNN", "RNNCell", "Sequential", "maxout", "apply_updates",
           "chain"]
