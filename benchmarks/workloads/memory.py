"""Workload 9: peak resident memory (RSS) over 100 calls of the MLP training step of workload
4, in a fresh process per variant. Reported twice: the process's peak, and how far the peak
rose above the resident size just before the first call (what the workload itself costs,
without the library's import footprint)."""
from __future__ import annotations

from ..harness import Workload
from . import mlp

WORKLOAD = Workload("peak_rss", "peak RSS over 100 MLP training steps", (mlp.STEP,),
                    kind="peak_rss", steps=100)
