"""Checkpoint I/O: safetensors / state_dict round-trips; pickled objects are refused."""
import json

import pytest
import torch

from cmraudit.errors import CheckpointError
from cmraudit.generators.checkpoint import (atomic_dir, load_weights, read_config, safe_torch_load, save_state,
                                            save_weights, write_json_atomic)


class Evil:  # any non-weight Python object: torch.save pickles it by reference
    def __reduce__(self):
        return (print, ("this would run on load",))


def _state():
    g = torch.Generator().manual_seed(0)
    return {"w": torch.randn(3, 4, generator=g), "b": torch.arange(4, dtype=torch.float32)}


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_weights_roundtrip(tmp_path, suffix):
    st = _state()
    save_weights(tmp_path / f"m{suffix}", st)
    back = load_weights(tmp_path / f"m{suffix}")
    assert set(back) == set(st) and all(torch.equal(back[k], st[k]) for k in st)
    assert not list(tmp_path.glob(".*tmp"))  # no temporary left behind


def test_tied_tensors_are_saved(tmp_path):
    w = torch.randn(2, 2)
    save_weights(tmp_path / "t.safetensors", {"a": w, "b": w})
    back = load_weights(tmp_path / "t.safetensors")
    assert torch.equal(back["a"], back["b"])


def test_pickled_object_refused(tmp_path, capsys):
    p = tmp_path / "evil.pt"
    torch.save({"w": torch.zeros(2), "payload": Evil()}, p)
    with pytest.raises(CheckpointError, match="pickled Python objects") as e:
        load_weights(p)
    assert str(p) in str(e.value)
    assert "this would run on load" not in capsys.readouterr().out
    with pytest.raises(CheckpointError, match="refused"):
        safe_torch_load(p)


def test_not_a_state_dict_refused(tmp_path):
    p = tmp_path / "list.pt"
    torch.save([torch.zeros(1)], p)
    with pytest.raises(CheckpointError, match="flat state_dict"):
        load_weights(p)
    (tmp_path / "junk.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="safetensors"):
        load_weights(tmp_path / "junk.safetensors")
    with pytest.raises(CheckpointError, match="not found"):
        load_weights(tmp_path / "missing.pt")


def test_nested_training_state_loads_with_weights_only(tmp_path):
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.ones(2))])
    opt.zero_grad()
    save_state(
        tmp_path / "s.pt", {"step": 3, "optimizer": opt.state_dict(), "losses": [0.5, 0.25], "config": {"lr": 1e-4}}
    )
    st = safe_torch_load(tmp_path / "s.pt")
    assert st["step"] == 3 and st["losses"] == [0.5, 0.25] and st["config"]["lr"] == 1e-4


def test_atomic_dir_leaves_nothing_on_failure(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path / "model") as d:
            (d / "x").write_text("partial")
            raise RuntimeError("crash")
    assert not (tmp_path / "model").exists() and list(tmp_path.iterdir()) == []


def test_read_config_checks_format(tmp_path):
    with pytest.raises(CheckpointError, match="config.json"):
        read_config(tmp_path)
    write_json_atomic(tmp_path / "config.json", {"format": "other"})
    with pytest.raises(CheckpointError, match="format"):
        read_config(tmp_path)
    write_json_atomic(tmp_path / "config.json", {"format": "cmraudit-generator", "format_version": 99})
    with pytest.raises(CheckpointError, match="newer"):
        read_config(tmp_path)
    write_json_atomic(tmp_path / "config.json", {"format": "cmraudit-generator", "format_version": 1, "params": (1, 2)})
    assert json.loads((tmp_path / "config.json").read_text())["params"] == [1, 2]
