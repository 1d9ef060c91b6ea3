"""funcgrad.tree_util: flattening, rebuilding and mapping pytrees; treedefs as cache keys;
errors that show both structures."""
from __future__ import annotations

import collections
import dataclasses

import numpy as np
import pytest
from hypothesis import given, strategies as st

import funcgrad
from funcgrad import tree_util as tu

Point = collections.namedtuple("Point", "x y")


@dataclasses.dataclass
class Layer:
    w: object
    b: object
    activation: str = dataclasses.field(default="relu", metadata={"static": True})


class Box:
    """A user type registered by hand: ``value`` is a child, ``label`` static."""

    def __init__(self, value, label):
        self.value, self.label = value, label


tu.register_pytree_node(Box, lambda b: ((b.value,), b.label), lambda label, c: Box(c[0], label))


# ---------------------------------------------------------------------------------------------
# Random trees

leaves = st.integers(-100, 100)


def _children(inner):
    names = st.text("abcdefgh", min_size=1, max_size=3)
    return st.one_of(
        st.lists(inner, max_size=3),
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(names, inner, max_size=3),
        st.tuples(inner, inner).map(lambda t: Point(*t)),
        st.tuples(inner, inner, st.sampled_from(["relu", "tanh"])).map(lambda t: Layer(*t)),
        st.tuples(inner, st.sampled_from(["p", "q"])).map(lambda t: Box(*t)),
        st.just(None),
    )


trees = st.recursive(leaves, _children, max_leaves=12)


def _same(a, b) -> bool:
    """Structural and leaf equality (Box and dataclasses compare by their parts)."""
    la, ta = tu.tree_flatten(a)
    lb, tb = tu.tree_flatten(b)
    return ta == tb and la == lb


@given(trees)
def test_flatten_unflatten_round_trip(tree):
    leaves_, treedef = tu.tree_flatten(tree)
    assert treedef.num_leaves == len(leaves_)
    rebuilt = tu.tree_unflatten(treedef, leaves_)
    assert _same(rebuilt, tree)
    assert type(rebuilt) is type(tree)
    assert all(isinstance(x, int) for x in leaves_)


@given(trees)
def test_tree_map_of_several_trees(tree):
    doubled = tu.tree_map(lambda x: 2 * x, tree)
    summed = tu.tree_map(lambda a, b, c: a + b + c, tree, doubled, tree)
    assert tu.tree_leaves(summed) == [4 * x for x in tu.tree_leaves(tree)]
    assert tu.tree_structure(summed) == tu.tree_structure(tree)


@given(trees, trees)
def test_treedefs_are_hashable_and_equal_exactly_when_structures_match(a, b):
    ta, tb = tu.tree_structure(a), tu.tree_structure(b)
    same = ta == tb
    assert same == (tu.tree_structure(tu.tree_map(lambda _: 0, a))
                    == tu.tree_structure(tu.tree_map(lambda _: 0, b)))
    if same:
        assert hash(ta) == hash(tb)
    cache = {ta: "a"}
    assert cache.get(tb) == ("a" if same else None)


def test_treedef_equality_ignores_leaf_values_but_not_structure():
    assert tu.tree_structure({"a": 1, "b": [2, 3]}) == tu.tree_structure({"b": [0, 0], "a": 9})
    assert tu.tree_structure([1, 2]) != tu.tree_structure((1, 2))
    assert tu.tree_structure([1, 2]) != tu.tree_structure([1, [2]])
    assert tu.tree_structure({"a": 1}) != tu.tree_structure({"b": 1})
    assert tu.tree_structure(Point(1, 2)) != tu.tree_structure((1, 2))
    assert repr(tu.tree_structure(Point(1, [2]))) == "PyTreeDef(Point(*, [*]))"
    assert repr(tu.tree_structure(Layer(1, 2))) == "PyTreeDef(Layer[('relu',)](*, *))"


# ---------------------------------------------------------------------------------------------
# Node types


def test_dict_keys_are_sorted_whatever_the_insertion_order():
    leaves_, treedef = tu.tree_flatten({"b": 2, "a": 1, "c": 3})
    assert leaves_ == [1, 2, 3]
    assert list(tu.tree_unflatten(treedef, [10, 20, 30])) == ["a", "b", "c"]
    assert tu.tree_structure({"b": 0, "a": 0}) == tu.tree_structure({"a": 0, "b": 0})


def test_ordered_dict_keeps_insertion_order():
    od = collections.OrderedDict([("b", 2), ("a", 1)])
    leaves_, treedef = tu.tree_flatten(od)
    assert leaves_ == [2, 1]
    rebuilt = tu.tree_unflatten(treedef, leaves_)
    assert type(rebuilt) is collections.OrderedDict and list(rebuilt) == ["b", "a"]


def test_defaultdict_keeps_its_factory():
    dd = collections.defaultdict(list, {"y": 2, "x": 1})
    leaves_, treedef = tu.tree_flatten(dd)
    assert leaves_ == [1, 2]
    rebuilt = tu.tree_unflatten(treedef, leaves_)
    assert isinstance(rebuilt, collections.defaultdict) and rebuilt.default_factory is list


def test_none_is_an_empty_node_not_a_leaf():
    leaves_, treedef = tu.tree_flatten([1, None, {"a": None, "b": 2}])
    assert leaves_ == [1, 2]
    assert tu.tree_unflatten(treedef, [5, 6]) == [5, None, {"a": None, "b": 6}]
    assert tu.tree_map(lambda x: x + 1, (None, 1)) == (None, 2)
    assert tu.tree_leaves(None) == [] and tu.tree_structure(None).num_leaves == 0


def test_namedtuple_is_a_node_and_rebuilds_its_type():
    p = Point(np.ones(2), [np.zeros(3)])
    leaves_, treedef = tu.tree_flatten(p)
    assert len(leaves_) == 2
    q = tu.tree_unflatten(treedef, [1, 2])
    assert type(q) is Point and q == Point(1, [2])
    paths = [tu.keystr(path) for path, _ in tu.tree_flatten_with_path(p)[0]]
    assert paths == [".x", ".y[0]"]


def test_dataclass_static_fields_are_part_of_the_structure():
    layer = Layer(np.ones((2, 2)), np.zeros(2), "tanh")
    leaves_, treedef = tu.tree_flatten(layer)
    assert len(leaves_) == 2
    rebuilt = tu.tree_unflatten(treedef, [1, 2])
    assert type(rebuilt) is Layer and (rebuilt.w, rebuilt.b, rebuilt.activation) == (1, 2, "tanh")
    assert treedef != tu.tree_structure(Layer(1, 2, "relu"))
    assert treedef == tu.tree_structure(Layer(5, 6, "tanh"))


def test_register_dataclass_with_explicit_fields():
    @dataclasses.dataclass
    class Opt:
        lr: float
        state: object
    tu.register_dataclass(Opt, data_fields=["state"], meta_fields=["lr"])
    leaves_, treedef = tu.tree_flatten(Opt(0.1, (1, 2)))
    assert leaves_ == [1, 2]
    assert tu.tree_unflatten(treedef, [3, 4]) == Opt(0.1, (3, 4))
    assert treedef != tu.tree_structure(Opt(0.2, (1, 2)))


def test_register_pytree_node_and_its_misuse():
    leaves_, treedef = tu.tree_flatten(Box([1, 2], "p"))
    assert leaves_ == [1, 2]
    rebuilt = tu.tree_unflatten(treedef, [3, 4])
    assert type(rebuilt) is Box and rebuilt.value == [3, 4] and rebuilt.label == "p"
    assert treedef != tu.tree_structure(Box([1, 2], "q"))
    with pytest.raises(ValueError, match="already registered"):
        tu.register_pytree_node(Box, lambda b: ((), None), lambda a, c: None)


def test_arrays_and_scalars_are_leaves_and_is_leaf_stops_early():
    x = np.arange(3.0)
    assert tu.tree_leaves([x, 1.0, "s"]) == [x, 1.0, "s"]
    tree = {"a": (1, 2), "b": [3]}
    leaves_, treedef = tu.tree_flatten(tree, is_leaf=lambda t: isinstance(t, tuple))
    assert leaves_ == [(1, 2), 3]
    assert tu.tree_map(len, tree, is_leaf=lambda t: isinstance(t, (tuple, list))) == {"a": 2, "b": 1}


# ---------------------------------------------------------------------------------------------
# Mismatches


def test_tree_map_mismatch_shows_both_structures():
    with pytest.raises(ValueError) as info:
        tu.tree_map(lambda a, b: a + b, {"w": 1, "b": (2, 3)}, {"w": 1, "b": [2, 3]})
    msg = str(info.value)
    assert "at ['b']: expected (*, *), got [*, *]" in msg
    assert "expected: PyTreeDef({'b': (*, *), 'w': *})" in msg
    assert "got:      PyTreeDef({'b': [*, *], 'w': *})" in msg


def test_tree_map_mismatch_in_dict_keys_and_lengths():
    with pytest.raises(ValueError, match="expected.*'a'.*\n.*got.*'b'"):
        tu.tree_map(lambda a, b: a, {"a": 1}, {"b": 1})
    with pytest.raises(ValueError, match=r"top level: expected \[\*, \*\], got \[\*, \*, \*\]"):
        tu.tree_map(lambda a, b: a, [1, 2], [1, 2, 3])


def test_tree_map_accepts_deeper_trees_after_the_first():
    # The first tree is a prefix: its leaves meet whole subtrees of the others.
    out = tu.tree_map(lambda a, b: (a, len(b)), [1, 2], [[0, 0], (0,)])
    assert out == [(1, 2), (2, 1)]


def test_unflatten_with_the_wrong_number_of_leaves():
    treedef = tu.tree_structure((1, [2, 3]))
    with pytest.raises(ValueError, match="has 3 leaves, but 2 values"):
        tu.tree_unflatten(treedef, [1, 2])


def test_tree_transpose_and_reduce():
    outer, inner = tu.tree_structure([0, 0]), tu.tree_structure((0, 0, 0))
    assert tu.tree_transpose(outer, inner, [(1, 2, 3), (4, 5, 6)]) == ([1, 4], [2, 5], [3, 6])
    assert tu.tree_reduce(lambda a, b: a + b, {"a": 1, "b": (2, 3)}) == 6
    assert tu.tree_all([True, (1, None)]) and not tu.tree_all([True, 0])


def test_treedef_reprs_readably():
    treedef = tu.tree_structure({"params": [1, 2], "step": 0, "extra": (None, 1)})
    assert repr(treedef) == "PyTreeDef({'extra': (None, *), 'params': [*, *], 'step': *})"


# ---------------------------------------------------------------------------------------------
# Pytrees through the transforms


def test_transforms_accept_every_node_type():
    import funcgrad.numpy as fnp

    params = {"layer": Layer(np.ones(3), np.float64(0.5), "tanh"), "p": Point(np.ones(3), None),
              "box": Box(np.arange(3.0), "p"), "od": collections.OrderedDict(z=np.ones(3))}

    def loss(p):
        a = p["layer"].w * p["layer"].b if p["layer"].activation == "tanh" else 0.0
        return fnp.sum(a * p["p"].x + p["box"].value * p["od"]["z"])

    g = funcgrad.grad(loss)(params)
    assert tu.tree_structure(g) == tu.tree_structure(params)
    np.testing.assert_allclose(g["layer"].w, 0.5 * np.ones(3))
    np.testing.assert_allclose(g["layer"].b, 3.0)
    np.testing.assert_allclose(g["box"].value, np.ones(3))
    assert g["p"].y is None


@tu.register_pytree_node_class
class Scaled:
    """A container through methods, as jax.tree_util.register_pytree_node_class takes."""

    def __init__(self, value, scale: float):
        self.value, self.scale = value, scale

    def tree_flatten(self):
        return (self.value,), self.scale

    @classmethod
    def tree_unflatten(cls, scale, children):
        return cls(children[0], scale)


def test_register_pytree_node_class():
    leaves, treedef = tu.tree_flatten([Scaled(np.ones(2), 3.0)])
    assert len(leaves) == 1 and treedef == tu.tree_structure([Scaled(np.zeros(2), 3.0)])
    assert treedef != tu.tree_structure([Scaled(np.zeros(2), 2.0)])     # aux data is static
    g = funcgrad.grad(lambda s: funcgrad.numpy.sum(s.value ** 2) * s.scale)(Scaled(np.ones(2), 3.0))
    assert isinstance(g, Scaled) and g.scale == 3.0
    np.testing.assert_array_equal(g.value, [6.0, 6.0])
