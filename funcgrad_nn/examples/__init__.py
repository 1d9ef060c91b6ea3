"""Runnable examples of the course's workloads, each ``python -m funcgrad_nn.examples.<name>``
in under a minute on the bundled digits or a generated corpus:

* ``linear_classifiers``: softmax and multiclass-SVM linear classifiers with SGD
* ``two_layer_net``: the two-layer net, with its sanity checks and a step-decay schedule
* ``cnn``: a convolutional net with batch normalization and dropout
* ``char_lstm``: a character-level LSTM language model trained with ``lax.scan``
* ``per_example_gradients``: per-example gradients with ``vmap`` (DP-SGD-style clipping)

Each module's ``main(argv)`` returns its final metrics (the smoke tests call it).
"""
