"""Checkpoints: a pytree of arrays saved as ``.npz`` plus a JSON description.

Each leaf is stored under its path (``params/conv2d_0/w``); the JSON records the tree's
shape (dicts, lists, tuples, named tuples with their field names) and user metadata. Writes
are atomic (a temporary file in the same directory, then ``os.replace``). Loading never
unpickles (``allow_pickle=False``), so a checkpoint cannot run code.

``restore(path, template)`` rebuilds exactly the template's structure (e.g. an optimizer
state from ``opt.init(params)``). ``load_matching(path, template)`` copies what matches by
name and shape and reports the rest, for fine-tuning as in Caffe: same name copied,
different name kept from the template (re-initialized).
"""
from __future__ import annotations

import json
import os
import tempfile
import zipfile
from typing import Any

import numpy as np

from funcgrad.tree_util import keystr, tree_flatten_with_path, tree_unflatten

FORMAT = "funcgrad-checkpoint/1"
_META = "__funcgrad_meta__"


class CheckpointError(ValueError):
    """A checkpoint file is missing, corrupt, or does not match the expected structure."""


def _path_str(path: tuple) -> str:
    parts = []
    for k in path:
        name = getattr(k, "name", k)
        parts.append(str(name))
    return "/".join(parts) if parts else "."


def _describe(tree: Any) -> Any:
    """A JSON description of the containers (leaves become null)."""
    if isinstance(tree, dict):
        return {"dict": {str(k): _describe(v) for k, v in tree.items()}}
    if isinstance(tree, tuple) and hasattr(type(tree), "_fields"):
        return {"namedtuple": type(tree).__name__,
                "fields": {f: _describe(getattr(tree, f)) for f in type(tree)._fields}}
    if isinstance(tree, (list, tuple)):
        return {type(tree).__name__: [_describe(v) for v in tree]}
    if tree is None:
        return {"none": None}
    return None


def save(path: str | os.PathLike, tree: Any, **metadata) -> None:
    """Atomically write ``tree`` (a pytree of arrays and scalars) and JSON-able metadata."""
    path = os.fspath(path)
    leaves, _ = tree_flatten_with_path(tree)
    arrays, paths = {}, {}
    for p, leaf in leaves:
        key, arr = _path_str(p), np.asarray(leaf)
        if arr.dtype == object:
            raise CheckpointError(f"checkpoint leaf {key} is not an array: {type(leaf).__name__}")
        if key in paths:
            raise CheckpointError(f"checkpoint leaves {keystr(paths[key])} and {keystr(p)} would "
                                  f"both be stored as {key!r}: rename a key")
        arrays[key], paths[key] = arr, p
    meta = {"format": FORMAT, "structure": _describe(tree), "order": list(arrays), "metadata": metadata}
    try:
        meta_bytes = json.dumps(meta).encode()
    except TypeError as e:
        raise CheckpointError(f"checkpoint metadata must be JSON-serializable: {e}") from None
    arrays[_META] = np.frombuffer(meta_bytes, np.uint8)
    directory = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())          # mkstemp makes it private; save as open() would
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _read(path) -> tuple[dict[str, np.ndarray], dict]:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        data = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise CheckpointError(f"corrupt checkpoint {path}: {e}") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise CheckpointError(f"{path} is not a funcgrad checkpoint (a single .npy array, not an "
                              ".npz archive)")
    try:
        with data:
            arrays = {k: data[k] for k in data.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
        raise CheckpointError(f"corrupt checkpoint {path}: {e}") from None
    if _META not in arrays:
        raise CheckpointError(f"{path} is not a funcgrad checkpoint (no metadata)")
    try:
        meta = json.loads(arrays.pop(_META).tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"corrupt checkpoint metadata in {path}: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise CheckpointError(f"{path}: unsupported checkpoint format {found!r}")
    if not isinstance(meta.get("metadata"), dict) or "structure" not in meta:
        raise CheckpointError(f"corrupt checkpoint metadata in {path}")
    return arrays, meta


def _rebuild(desc, arrays, prefix: tuple):
    if desc is None:
        key = _path_str(prefix)
        if key not in arrays:
            raise CheckpointError(f"checkpoint is missing array {key}")
        return arrays[key]
    if "namedtuple" in desc:
        return {f: _rebuild(v, arrays, prefix + (f,)) for f, v in desc["fields"].items()}
    (kind, body), = desc.items()
    if kind == "dict":
        return {k: _rebuild(v, arrays, prefix + (k,)) for k, v in body.items()}
    if kind in ("list", "tuple"):
        items = [_rebuild(v, arrays, prefix + (i,)) for i, v in enumerate(body)]
        return items if kind == "list" else tuple(items)
    if kind == "none":
        return None
    raise CheckpointError(f"corrupt checkpoint structure entry {kind!r}")


def load(path) -> tuple[Any, dict]:
    """Read a checkpoint as plain containers and its metadata. Named tuples become dicts
    and dict keys strings (``{1: x}`` loads as ``{"1": x}``); :func:`restore` rebuilds the
    original containers and keys from a template."""
    arrays, meta = _read(path)
    try:
        tree = _rebuild(meta["structure"], arrays, ())
    except CheckpointError:
        raise
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"corrupt checkpoint structure in {os.fspath(path)}: {e!r}") from None
    return tree, meta["metadata"]


def restore(path, template: Any) -> tuple[Any, dict]:
    """Load into exactly ``template``'s structure; every leaf must exist with the same shape."""
    arrays, meta = _read(path)
    leaves, treedef = tree_flatten_with_path(template)
    out, problems = [], []
    for p, leaf in leaves:
        key = _path_str(p)
        want = np.shape(leaf)
        if key not in arrays:
            problems.append(f"{key}: missing")
            continue
        got = arrays[key]
        if got.shape != want:
            problems.append(f"{key}: shape {got.shape}, expected {want}")
            continue
        out.append(got.astype(np.asarray(leaf).dtype, copy=False))
    if problems:
        raise CheckpointError(f"checkpoint {os.fspath(path)} does not match the expected structure:\n  "
                              + "\n  ".join(problems))
    return tree_unflatten(treedef, out), meta["metadata"]


def load_matching(path, template: Any, prefix: str = "") -> tuple[Any, dict]:
    """Copy leaves whose path (under ``prefix`` in the file) and shape match ``template``;
    keep the template's values elsewhere. Returns ``(tree, report)`` where ``report`` lists
    ``copied``, ``kept`` (not in the file or shape differs) and ``unused`` file entries."""
    arrays, _ = _read(path)
    leaves, treedef = tree_flatten_with_path(template)
    base = prefix.strip("/")
    out, copied, kept = [], [], []
    used = set()
    for p, leaf in leaves:
        key = _path_str(p)
        file_key = f"{base}/{key}" if base else key
        arr = arrays.get(file_key)
        if arr is not None and arr.shape == np.shape(leaf):
            out.append(arr.astype(np.asarray(leaf).dtype, copy=False))
            copied.append(key)
            used.add(file_key)
        else:
            out.append(leaf)
            kept.append(key if arr is None else f"{key} (shape {arr.shape} in file, {np.shape(leaf)} here)")
    unused = sorted(k for k in arrays if k not in used and (not base or k.startswith(base + "/")))
    return tree_unflatten(treedef, out), {"copied": copied, "kept": kept, "unused": unused}

