"""Every registered primitive has all its rules and a test file that exercises it.

``PRIMITIVES`` below is the table of record: each primitive's test file, and whether it is
linear (in some operands), so that reverse mode needs its transpose rule. A new primitive
fails here until it has impl, abstract_eval, jvp and batch rules (and transpose if linear),
an entry in the table, and a mention in that test file (its quoted name or ``<name>_p``).
"""
from __future__ import annotations

import pathlib
import re

import pytest

import funcgrad  # noqa: F401  (registers every primitive)
from funcgrad import core

TESTS = pathlib.Path(__file__).parent

ELEMENTWISE = "test_primitives_elementwise.py"
STRUCTURAL = "test_primitives_structural.py"
REDUCTION = "test_primitives_reduction.py"
INDEXING = "test_indexing.py"
CONV = "test_conv.py"
LINALG = "test_linalg.py"
CONTROL_FLOW = "test_control_flow.py"
CUSTOM = "test_custom_derivatives.py"
JIT = "test_jit.py"
REMAT = "test_remat.py"


def _table(test_file: str, linear: str = "", nonlinear: str = "") -> dict[str, tuple[str, bool]]:
    return {**{n: (test_file, True) for n in linear.split()},
            **{n: (test_file, False) for n in nonlinear.split()}}


PRIMITIVES: dict[str, tuple[str, bool]] = {
    **_table(ELEMENTWISE,
             linear="add add_any sub mul div neg select convert_element_type",
             nonlinear="""exp exp2 expm1 log log1p log2 log10 sqrt rsqrt cbrt sin cos tan asin
                 acos atan sinh cosh tanh asinh acosh atanh logistic erf erfc erf_inv floor ceil
                 round sign abs is_finite not stop_gradient pow max min atan2 rem floor_divide
                 nextafter eq ne lt le gt ge and or xor shift_left shift_right integer_pow clamp
                 bitcast_convert_type"""),
    **_table(STRUCTURAL,
             linear="broadcast_in_dim reshape transpose squeeze expand_dims rev slice pad concatenate",
             nonlinear="iota"),
    **_table(REDUCTION, linear="reduce_sum cumsum",
             nonlinear="""reduce_max reduce_min reduce_prod reduce_and reduce_or argmax argmin
                 cumprod cummax cummin"""),
    **_table(INDEXING, linear="gather scatter dynamic_slice dynamic_update_slice", nonlinear="sort"),
    **_table(CONV, linear="conv_general_dilated reduce_window_sum window_gather window_scatter_add",
             nonlinear="""reduce_window_max reduce_window_min reduce_window_argmax
                 reduce_window_argmin"""),
    **_table(LINALG, linear="dot_general triangular_solve",
             nonlinear="cholesky eigh lu pinv qr svd"),
    **_table(CONTROL_FLOW, linear="cond scan while"),
    **_table(CUSTOM, linear="custom_lin", nonlinear="custom_jvp_call custom_vjp_call"),
    **_table(JIT, linear="jit_call"),
    **_table(REMAT, linear="remat"),
    **_table("test_fusion.py", nonlinear="fused_kernel"),
}

REGISTERED = sorted(core.registry)


def test_every_primitive_is_in_the_table():
    missing = sorted(set(core.registry) - set(PRIMITIVES))
    assert not missing, (f"primitives {missing} are not in tests/test_rules_complete.py's "
                         "PRIMITIVES table: add each with its test file and linearity")


def test_the_table_has_no_stale_entries():
    stale = sorted(set(PRIMITIVES) - set(core.registry))
    assert not stale, f"PRIMITIVES lists {stale}, which are not registered primitives"


@pytest.mark.parametrize("name", REGISTERED)
def test_primitive_has_its_rules(name):
    prim = core.registry[name]
    linear = PRIMITIVES.get(name, (None, False))[1]
    needed = ["impl", "abstract_eval", "jvp", "batch"] + (["transpose"] if linear else [])
    missing = [rule for rule in needed if getattr(prim, rule) is None]
    assert not missing, f"primitive {name} has no {', '.join(missing)} rule"
    if name in PRIMITIVES and not linear:
        assert prim.transpose is None, (f"{name} has a transpose rule, but the PRIMITIVES table "
                                        "says it is not linear: mark it linear")


@pytest.mark.parametrize("name", REGISTERED)
def test_primitive_is_exercised_by_its_test_file(name):
    if name not in PRIMITIVES:
        pytest.fail(f"{name} is not in the PRIMITIVES table")
    test_file = TESTS / PRIMITIVES[name][0]
    assert test_file.exists(), f"{name} is to be tested in {test_file.name}, which does not exist"
    text = test_file.read_text()
    mention = re.compile(rf"""["']{re.escape(name)}["']|\b{re.escape(name)}_p\b""")
    assert mention.search(text), (f"{test_file.name} never names primitive {name} "
                                  f"(as '{name}' or {name}_p)")

