"""The plugin contract: a plugin without presets, registered from outside the package, gets ``--device``,
``--resume``, ``work_dir`` and ``progress`` from ``cmraudit run`` exactly like the built-ins; its name is the
entry point's; a class that does not subclass BaseGenerator is refused (exit 3)."""
import json
import textwrap

import pytest

from cmraudit.cli.main import main
from cmraudit.errors import EXIT_PLUGIN
from cmraudit.generators import registry

PLUGIN = textwrap.dedent('''
    import numpy as np
    from cmraudit.generators import (BaseGenerator, GeneratorTags, check_is_fitted, load_checkpoint,
                                     save_checkpoint, synthetic_dataset)


    class ContractGen(BaseGenerator):
        """No presets; records the contract's keywords it was called with."""

        tags = GeneratorTags(conditional=True, two_stage=True)

        def __init__(self, *, level: float = 0.0, device: str = "auto"):
            self.level = level
            self.device = device

        def fit(self, train, *, seed, dp=None, progress=True, work_dir=None, resume=False, reference=None):
            self.calls_ = {"work_dir": str(work_dir), "resume": resume, "progress": progress, "seed": seed}
            self.masks_ = np.asarray(train.masks[:4])
            return self

        def sample(self, *, masks=None, n=None, seed, progress=True):
            check_is_fitted(self, ("masks_",))
            m = self.masks_[np.arange(n) % len(self.masks_)] if masks is None else np.asarray(masks)
            img = np.random.default_rng(seed).uniform(-1, 1, m.shape) * 0.1 + self.level
            ds = synthetic_dataset(img, m, generator=self.name)
            ds.meta["sample_progress"] = progress
            return ds

        def save(self, path):
            save_checkpoint(path, self, {"masks": self.masks_}, fitted=self.calls_)

        @classmethod
        def load(cls, path):
            gen, w, fitted = load_checkpoint(path, cls)
            gen.masks_, gen.calls_ = w["masks"].numpy(), fitted
            return gen


    class NotAPlugin:  # duck-typed, outside the contract
        tags = GeneratorTags()
''')


@pytest.fixture
def contract_plugin(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    (site / "contract_plugin_mod.py").write_text(PLUGIN)
    d = site / "contractplugin-0.1.dist-info"
    d.mkdir()
    (d / "METADATA").write_text("Metadata-Version: 2.1\nName: contractplugin\nVersion: 0.1\n")
    (d / "entry_points.txt").write_text("[cmraudit.generators]\ncontract-toy = contract_plugin_mod:ContractGen\n"
                                        "not-a-plugin = contract_plugin_mod:NotAPlugin\n")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr("cmraudit.pipeline.STAGES", [])  # the audit stages are tested elsewhere; here: the contract
    registry.refresh()
    yield tmp_path
    registry.refresh()


def test_plugin_without_presets_gets_device_resume_work_dir(contract_plugin):
    out = contract_plugin / "run"
    rc = main(["-q", "--threads", "1", "run", "-g", "contract-toy", "--preset", "micro", "--device", "cpu", "--resume",
               "--set", "level=0.25", "--n-samples", "3", "--n-paired", "2", "--out", str(out)])
    assert rc == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["generator"]["name"] == "contract-toy" and rep["generator"]["entry_point"].endswith(":ContractGen")
    assert rep["generator"]["params"] == {"level": 0.25, "device": "cpu"}  # --device reached the constructor
    cfg = json.loads((out / "model" / "config.json").read_text())
    assert cfg["generator"] == "contract-toy"  # the name comes from the entry point, written once
    calls = cfg["fitted"]
    assert calls["work_dir"] == str(out / "work") and calls["resume"] is True and calls["progress"] is False
    from cmraudit.data.dataset import read_dataset

    assert read_dataset(out / "synthetic").meta["sample_progress"] is False
    assert all(rep[s]["status"] == "skipped" for s in ("privacy", "fidelity", "utility"))


def test_class_outside_the_contract_is_a_plugin_error(contract_plugin, capsys):
    rc = main(["-q", "run", "-g", "not-a-plugin", "--preset", "micro", "--out", str(contract_plugin / "r2")])
    assert rc == EXIT_PLUGIN
    err = capsys.readouterr().err
    assert "not-a-plugin" in err and "BaseGenerator" in err
    assert not (contract_plugin / "r2").exists()  # refused before anything was written


def test_name_params_and_presets_derive_from_the_signature(contract_plugin):
    cls = registry.get_generator_class("contract-toy")
    assert cls.name == "contract-toy" and cls.param_names() == ("level", "device")
    assert cls.from_preset("paper").get_params() == {"level": 0.0, "device": "auto"}  # no presets: defaults
    assert cls.conformance_params() == {"device": "cpu"}
    from cmraudit.errors import UsageError

    with pytest.raises(UsageError, match="nonsense"):
        cls.from_preset("micro", nonsense=1)
    with pytest.raises(UsageError, match="preset 'huge'"):
        cls.from_preset("huge")


def test_the_kit_resolves_every_name_without_torch():
    import subprocess
    import sys

    code = ("import sys, cmraudit.generators as g; "
            "light = [n for n in g.__all__ if n not in ('TwoStageGenerator', 'save_checkpoint', 'load_checkpoint', "
            "'save_weights', 'load_weights', 'read_config', 'load_generator')]; [getattr(g, n) for n in light]; "
            "print('torch' in sys.modules); [getattr(g, n) for n in g.__all__]; print(len(g.__all__))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["False", str(len(__import__("cmraudit.generators").generators.__all__))]
