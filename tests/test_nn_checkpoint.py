"""Checkpoints round-trip, write atomically, never unpickle, and load by name."""
import os


import numpy as np
import pytest

from funcgrad_nn import checkpoint, optim
from funcgrad_nn.checkpoint import CheckpointError


def tree():
    params = {"conv1": {"w": np.arange(6.0, dtype=np.float32).reshape(2, 3), "b": np.zeros(2, np.float32)},
              "fc": {"w": np.ones((3, 4), np.float32)}}
    return {"params": params, "opt_state": optim.adam(1e-3).init(params), "step": np.int64(7)}


def test_round_trip_restore(tmp_path):
    t = tree()
    path = tmp_path / "ck.npz"
    checkpoint.save(path, t, epoch=3, note="hi")
    restored, meta = checkpoint.restore(path, tree())
    assert meta == {"epoch": 3, "note": "hi"}
    np.testing.assert_array_equal(restored["params"]["conv1"]["w"], t["params"]["conv1"]["w"])
    assert type(restored["opt_state"]) is type(t["opt_state"])       # named tuples rebuilt
    assert int(restored["step"]) == 7
    plain, _ = checkpoint.load(path)
    assert set(plain["params"]) == {"conv1", "fc"}
    assert "mu" in plain["opt_state"][0]                               # field names kept


def test_loading_refuses_pickles(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, data=np.array([{"x": 1}], dtype=object))            # needs pickle to read
    with pytest.raises(CheckpointError):
        checkpoint.load(path)


def test_corrupt_and_missing_files(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(CheckpointError, match="corrupt"):
        checkpoint.load(bad)
    with pytest.raises(CheckpointError, match="not found"):
        checkpoint.load(tmp_path / "nope.npz")
    np.savez(tmp_path / "plain.npz", a=np.ones(2))
    with pytest.raises(CheckpointError, match="not a funcgrad checkpoint"):
        checkpoint.load(tmp_path / "plain.npz")


def test_restore_reports_mismatch(tmp_path):
    path = tmp_path / "ck.npz"
    checkpoint.save(path, tree())
    other = tree()
    other["params"]["fc"]["w"] = np.ones((5, 4), np.float32)
    with pytest.raises(CheckpointError, match=r"params/fc/w: shape \(3, 4\), expected \(5, 4\)"):
        checkpoint.restore(path, other)


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "ck.npz"
    checkpoint.save(path, tree(), epoch=1)

    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError):
        checkpoint.save(path, tree(), epoch=2)
    monkeypatch.undo()
    _, meta = checkpoint.load(path)
    assert meta["epoch"] == 1                                           # old file intact
    assert [f for f in os.listdir(tmp_path) if f.startswith(".tmp")] == []


def test_fine_tuning_copies_matching_names(tmp_path):
    path = tmp_path / "ck.npz"
    checkpoint.save(path, tree())
    target = {"conv1": {"w": np.zeros((2, 3), np.float32), "b": np.ones(2, np.float32)},
              "fc": {"w": np.zeros((3, 10), np.float32)},            # new head: different shape
              "fc2": {"w": np.zeros((10, 2), np.float32)}}           # new layer
    params, report = checkpoint.load_matching(path, target, prefix="params")
    np.testing.assert_array_equal(params["conv1"]["w"], tree()["params"]["conv1"]["w"])
    np.testing.assert_array_equal(params["fc"]["w"], target["fc"]["w"])
    assert sorted(report["copied"]) == ["conv1/b", "conv1/w"]
    assert any(k.startswith("fc/w") for k in report["kept"]) and "fc2/w" in report["kept"]
    assert report["unused"] == ["params/fc/w"]


def test_metadata_must_be_json(tmp_path):
    with pytest.raises(CheckpointError, match="JSON"):
        checkpoint.save(tmp_path / "x.npz", tree(), bad=object())



@pytest.mark.parametrize("colliding,paths", [
    ({"a/b": np.ones(2), "a": {"b": np.zeros(2)}}, ("['a']['b']", "['a/b']")),
    ({1: np.ones(2), "1": np.zeros(2)}, ("[1]", "['1']")),
])
def test_colliding_key_paths_are_refused(tmp_path, colliding, paths):
    """Leaves stored under the same name would overwrite each other: save refuses, naming both."""
    with pytest.raises(CheckpointError, match="would both be stored as") as e:
        checkpoint.save(tmp_path / "x.npz", colliding)
    assert all(p in str(e.value) for p in paths)
    assert not os.path.exists(tmp_path / "x.npz")


def test_integer_keys_load_as_strings_and_restore_by_template(tmp_path):
    path = tmp_path / "x.npz"
    checkpoint.save(path, {1: np.ones(2)})
    assert list(checkpoint.load(path)[0]) == ["1"]
    assert list(checkpoint.restore(path, {1: np.zeros(2)})[0]) == [1]


def test_a_npy_file_is_not_a_checkpoint(tmp_path):
    np.save(tmp_path / "x.npy", np.ones(3))
    with pytest.raises(CheckpointError, match=r"not a funcgrad checkpoint \(a single .npy array"):
        checkpoint.load(tmp_path / "x.npy")
