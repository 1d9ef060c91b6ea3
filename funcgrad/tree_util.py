"""Pytrees: nested containers whose leaves are arrays.

Containers are tuples, lists, dicts (keys sorted), ``None`` (an empty node), namedtuples,
dataclasses (fields marked ``metadata={"static": True}`` are part of the structure, not
leaves), and any type given to :func:`register_pytree_node`. Everything else is a leaf.

A :class:`PyTreeDef` is hashable and comparable, so it can key a cache (``jit`` uses it).
"""
from __future__ import annotations

import collections
import dataclasses
from typing import Any, Callable, Hashable, Iterable, NamedTuple

__all__ = [
    "PyTreeDef", "tree_flatten", "tree_unflatten", "tree_leaves", "tree_structure", "tree_map",
    "register_pytree_node", "register_pytree_node_class", "register_dataclass",
    "treedef_is_leaf", "all_leaves",
    "tree_transpose", "tree_reduce", "tree_all", "tree_flatten_with_path", "keystr",
]


class _NodeType(NamedTuple):
    name: str
    flatten: Callable[[Any], tuple[Iterable, Hashable]]
    unflatten: Callable[[Hashable, list], Any]


_registry: dict[type, _NodeType] = {}
_leaf_types: set[type] = set()      # types seen to be leaves (a cache for flattening)


def register_pytree_node(nodetype: type, flatten_func: Callable, unflatten_func: Callable) -> None:
    """Make ``nodetype`` a container: ``flatten_func(x) -> (children, aux_data)`` and
    ``unflatten_func(aux_data, children) -> x``. ``aux_data`` must be hashable."""
    if nodetype in _registry:
        raise ValueError(f"register_pytree_node: {nodetype.__name__} is already registered")
    _registry[nodetype] = _NodeType(nodetype.__qualname__, flatten_func, unflatten_func)
    _leaf_types.discard(nodetype)


def register_pytree_node_class(cls: type) -> type:
    """Class decorator: ``cls`` is a container through its ``tree_flatten(self) -> (children,
    aux_data)`` method and ``tree_unflatten(cls, aux_data, children)`` classmethod."""
    register_pytree_node(cls, lambda x: x.tree_flatten(), cls.tree_unflatten)
    return cls


def register_dataclass(cls: type, data_fields: Iterable[str] | None = None,
                       meta_fields: Iterable[str] | None = None) -> type:
    """Register a dataclass; ``data_fields`` are children, ``meta_fields`` are static.

    With no field lists, fields whose metadata has ``static=True`` are meta, the rest data.
    Usable as a decorator. (Unregistered dataclasses are handled the same way automatically.)
    """
    if data_fields is None or meta_fields is None:
        data_fields, meta_fields = _dataclass_fields(cls)
    data_fields, meta_fields = tuple(data_fields), tuple(meta_fields)

    def flatten(x):
        return [getattr(x, f) for f in data_fields], tuple(getattr(x, f) for f in meta_fields)

    def unflatten(meta, children):
        obj = object.__new__(cls)
        for name, value in zip(data_fields, children):
            object.__setattr__(obj, name, value)
        for name, value in zip(meta_fields, meta):
            object.__setattr__(obj, name, value)
        return obj

    register_pytree_node(cls, flatten, unflatten)
    return cls


def _dataclass_fields(cls) -> tuple[tuple[str, ...], tuple[str, ...]]:
    fields = [f for f in dataclasses.fields(cls) if f.init]
    meta = tuple(f.name for f in fields if f.metadata.get("static", False))
    data = tuple(f.name for f in fields if not f.metadata.get("static", False))
    return data, meta


def _sorted_keys(d: dict) -> list:
    try:
        return sorted(d)
    except TypeError:  # keys of mixed types: order by type name, then by repr
        return sorted(d, key=lambda k: (type(k).__name__, repr(k)))


def _dict_flatten(d):
    keys = _sorted_keys(d)
    return [d[k] for k in keys], tuple(keys)


def _ordered_dict_flatten(d):
    return list(d.values()), tuple(d.keys())


def _defaultdict_flatten(d):
    keys = _sorted_keys(d)
    return [d[k] for k in keys], (d.default_factory, tuple(keys))


register_pytree_node(tuple, lambda t: (t, None), lambda _, c: tuple(c))
register_pytree_node(list, lambda l: (l, None), lambda _, c: list(c))
register_pytree_node(dict, _dict_flatten, lambda keys, c: dict(zip(keys, c)))
register_pytree_node(type(None), lambda _: ((), None), lambda _, c: None)
register_pytree_node(collections.OrderedDict, _ordered_dict_flatten,
                     lambda keys, c: collections.OrderedDict(zip(keys, c)))
register_pytree_node(collections.defaultdict, _defaultdict_flatten,
                     lambda aux, c: collections.defaultdict(aux[0], zip(aux[1], c)))


def _node_type(x) -> _NodeType | None:
    t = type(x)
    node = _registry.get(t)
    if node is not None:
        return node
    if issubclass(t, tuple) and hasattr(t, "_fields"):  # namedtuple
        node = _NodeType(t.__qualname__, lambda x: (tuple(x), None), lambda _, c, t=t: t(*c))
    elif dataclasses.is_dataclass(t):
        data, meta = _dataclass_fields(t)
        register_dataclass(t, data, meta)
        return _registry[t]
    else:
        _leaf_types.add(t)
        return None
    _registry[t] = node
    return node


class PyTreeDef:
    """The structure of a pytree: a node type, its static aux data, and child structures."""

    __slots__ = ("node", "aux", "children", "num_leaves", "_hash")

    def __init__(self, node: _NodeType | None, aux: Hashable, children: tuple["PyTreeDef", ...]):
        self.node = node            # None marks a leaf
        self.aux = aux
        self.children = children
        if node is None:
            self.num_leaves = 1
            self._hash = hash((None, aux, ()))
        else:
            n = 0
            for c in children:
                n += c.num_leaves
            self.num_leaves = n
            self._hash = hash((node.name, aux, tuple([c._hash for c in children])))

    def __hash__(self):
        return self._hash

    def __eq__(self, other):
        if self is other:
            return True
        return (isinstance(other, PyTreeDef) and self._hash == other._hash
                and self.node == other.node and self.aux == other.aux
                and self.children == other.children)

    @property
    def num_nodes(self) -> int:
        return 1 + sum(c.num_nodes for c in self.children)

    def unflatten(self, leaves: Iterable) -> Any:
        leaves = list(leaves)
        if len(leaves) != self.num_leaves:
            raise ValueError(f"tree_unflatten: structure {self} has {self.num_leaves} leaves, "
                             f"but {len(leaves)} values were given")
        it = iter(leaves)
        return self._build(it)

    def _build(self, it):
        if self.node is None:
            return next(it)
        return self.node.unflatten(self.aux, [c._build(it) for c in self.children])

    def flatten_up_to(self, tree: Any) -> list:
        """The subtrees of ``tree`` at this structure's leaves (``tree`` may be deeper)."""
        out: list = []
        self._flatten_up_to(tree, out, (self, tree), ())
        return out

    def _flatten_up_to(self, x, out, whole, path):
        if self.node is None:
            out.append(x)
            return
        node = _node_type(x)
        children, aux = node.flatten(x) if node is not None else ((), None)
        children = list(children)
        if (node is None or node.name != self.node.name or aux != self.aux
                or len(children) != len(self.children)):
            raise ValueError(_mismatch_message(*whole, path, self, x))
        keys = self.aux if self.node.name == "dict" else range(len(children))
        for c, sub, k in zip(self.children, children, keys):
            c._flatten_up_to(sub, out, whole, path + (k,))

    def __repr__(self):
        return f"PyTreeDef({self._str()})"

    def _str(self) -> str:
        if self.node is None:
            return "*"
        kids = [c._str() for c in self.children]
        name = self.node.name
        if name == "tuple":
            return "(" + ", ".join(kids) + ("," if len(kids) == 1 else "") + ")"
        if name == "list":
            return "[" + ", ".join(kids) + "]"
        if name == "dict":
            return "{" + ", ".join(f"{k!r}: {v}" for k, v in zip(self.aux, kids)) + "}"
        if name == "NoneType":
            return "None"
        aux = "" if self.aux is None else f"[{self.aux!r}]"
        return f"{name}{aux}(" + ", ".join(kids) + ")"


_LEAF = PyTreeDef(None, None, ())


def _flatten(x, leaves: list, is_leaf) -> PyTreeDef:
    if is_leaf is not None and is_leaf(x):
        leaves.append(x)
        return _LEAF
    t = type(x)
    node = _registry.get(t)
    if node is None and (t in _leaf_types or (node := _node_type(x)) is None):
        leaves.append(x)
        return _LEAF
    children, aux = node.flatten(x)
    return PyTreeDef(node, aux, tuple([_flatten(c, leaves, is_leaf) for c in children]))


def tree_flatten(tree: Any, is_leaf: Callable[[Any], bool] | None = None) -> tuple[list, PyTreeDef]:
    """Flatten ``tree`` into ``(leaves, treedef)``; ``is_leaf`` may stop the recursion early."""
    leaves: list = []
    return leaves, _flatten(tree, leaves, is_leaf)


def tree_unflatten(treedef: PyTreeDef, leaves: Iterable) -> Any:
    return treedef.unflatten(leaves)


def tree_leaves(tree: Any, is_leaf: Callable[[Any], bool] | None = None) -> list:
    return tree_flatten(tree, is_leaf)[0]


def tree_structure(tree: Any, is_leaf: Callable[[Any], bool] | None = None) -> PyTreeDef:
    return tree_flatten(tree, is_leaf)[1]


def treedef_is_leaf(treedef: PyTreeDef) -> bool:
    return treedef.node is None


def all_leaves(iterable: Iterable) -> bool:
    return all(tree_structure(x) == _LEAF for x in iterable)


def _mismatch_message(expected: PyTreeDef, tree: Any, path: tuple, expected_here: PyTreeDef,
                      got_here: Any) -> str:
    where = keystr(path) or "the top level"
    return (f"pytree structures do not match at {where}: expected {expected_here._str()}, got "
            f"{tree_structure(got_here)._str()}\n"
            f"  expected: {expected}\n"
            f"  got:      {tree_structure(tree)}")


def tree_map(f: Callable, tree: Any, *rest: Any, is_leaf: Callable[[Any], bool] | None = None) -> Any:
    """Apply ``f`` to corresponding leaves of ``tree`` and ``rest`` (same structure, or deeper)."""
    leaves, treedef = tree_flatten(tree, is_leaf)
    if not rest:
        return treedef.unflatten(f(x) for x in leaves)
    others = [treedef.flatten_up_to(r) for r in rest]
    return treedef.unflatten(f(*xs) for xs in zip(leaves, *others))


def tree_reduce(f: Callable, tree: Any, *initial, is_leaf=None) -> Any:
    import functools
    return functools.reduce(f, tree_leaves(tree, is_leaf), *initial)


def tree_all(tree: Any) -> bool:
    return all(tree_leaves(tree))


def tree_transpose(outer: PyTreeDef, inner: PyTreeDef, tree: Any) -> Any:
    """Turn a tree of structure outer-of-inner into one of inner-of-outer."""
    per_outer = [inner.flatten_up_to(sub) for sub in outer.flatten_up_to(tree)]
    per_inner = [outer.unflatten(col) for col in zip(*per_outer)]
    return inner.unflatten(per_inner)


def keystr(path: tuple) -> str:
    """Render a key path like ``[0]['w']``."""
    return "".join(f"[{k!r}]" if not isinstance(k, _Attr) else f".{k.name}" for k in path)


class _Attr(NamedTuple):
    name: str


def tree_flatten_with_path(tree: Any, is_leaf: Callable[[Any], bool] | None = None
                           ) -> tuple[list[tuple[tuple, Any]], PyTreeDef]:
    """Like tree_flatten, with each leaf's key path (indices, dict keys, field names)."""
    out: list = []

    def walk(x, path):
        if is_leaf is not None and is_leaf(x):
            out.append((path, x))
            return
        node = _registry.get(type(x)) or _node_type(x)
        if node is None:
            out.append((path, x))
            return
        children, aux = node.flatten(x)
        children = list(children)
        if isinstance(x, dict):
            keys = list(aux) if not isinstance(x, collections.defaultdict) else list(aux[1])
        elif dataclasses.is_dataclass(x):
            keys = [_Attr(f) for f in _dataclass_fields(type(x))[0]]
        elif isinstance(x, tuple) and hasattr(type(x), "_fields"):
            keys = [_Attr(f) for f in type(x)._fields]
        else:
            keys = list(range(len(children)))
        for k, c in zip(keys, children):
            walk(c, path + (k,))

    walk(tree, ())
    return out, tree_structure(tree, is_leaf)
