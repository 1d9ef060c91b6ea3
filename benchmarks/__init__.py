"""The benchmark suite: funcgrad against hand-written NumPy, autograd, JAX and PyTorch.

Run ``python -m benchmarks`` (``--help`` for the options). Layout: :mod:`.run` (the runner
and command line), :mod:`.worker` (one process per library), :mod:`.harness` (cases, the
result check, timing), :mod:`.report` (table, JSON, chart), :mod:`.workloads` (one module per
workload, one implementation per library). The standalone scripts ``bench_*.py`` beside them
are separate, narrower benchmarks.
"""
