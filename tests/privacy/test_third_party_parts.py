"""A membership attack and a feature space registered from OUTSIDE the package (entry points of a fake installed
distribution, as the generator-registry tests fake theirs) run through `cmraudit audit` into the report."""
from __future__ import annotations

import json
import textwrap

import pytest

from cmraudit.cli.main import main
from cmraudit.data.dataset import write_dataset
from cmraudit.generators.reference import CopycatGenerator
from cmraudit.registry import ATTACKS, FEATURE_SPACES

TOY = textwrap.dedent('''
    import numpy as np

    from cmraudit.features import FeatureSpace
    from cmraudit.privacy import Attack


    class ToyAttack(Attack):
        """Black-box: a candidate close to some synthetic slice is called a member."""

        name = "toy"
        needs = ("synthetic",)
        threat_model = "black-box (synthetic data only)"

        def score(self, ctx):
            f_t, f_h, f_s = next(iter(ctx.feats.values()))
            cand = np.concatenate([f_t, f_h]).astype(np.float64)
            d2 = (cand ** 2).sum(1)[:, None] - 2 * cand @ f_s.T + (f_s.astype(np.float64) ** 2).sum(1)[None]
            return -d2.min(1)


    class RowMeans(FeatureSpace):
        """Mean intensity of each image row: invariant to horizontal flips."""

        name = "rowmeans"
        invariances = ("flips",)
        invariance = "horizontal flips (row means)"

        def transform_images(self, images):
            return np.asarray(images, dtype=np.float32).mean(axis=2)
''')


@pytest.fixture
def toy_parts(tmp_path_factory, monkeypatch):
    root = tmp_path_factory.mktemp("toy-dist")
    (root / "cmraudit_toy_parts.py").write_text(TOY)
    d = root / "cmraudit_toy_parts-0.1.dist-info"
    d.mkdir()
    (d / "METADATA").write_text("Metadata-Version: 2.1\nName: cmraudit-toy-parts\nVersion: 0.1\n")
    (d / "entry_points.txt").write_text("[cmraudit.attacks]\ntoy = cmraudit_toy_parts:ToyAttack\n\n"
                                        "[cmraudit.feature_spaces]\nrowmeans = cmraudit_toy_parts:RowMeans\n"
                                        "pixel = cmraudit_toy_parts:RowMeans\n")
    monkeypatch.syspath_prepend(str(root))
    for reg in (ATTACKS, FEATURE_SPACES):
        reg.refresh()
    yield root
    for reg in (ATTACKS, FEATURE_SPACES):
        reg.refresh()


def test_toy_attack_and_space_from_entry_points_run_in_audit(tmp_path, phantom_split, toy_parts, capsys):
    with pytest.warns(UserWarning, match="built-in names cannot be shadowed"):
        assert "toy" in ATTACKS.names() and "rowmeans" in FEATURE_SPACES.names()
    assert FEATURE_SPACES.get("pixel").__module__ == "cmraudit.features.pixel"  # the built-in wins
    assert FEATURE_SPACES.conflicts[0].distribution == "cmraudit-toy-parts"
    train, holdout, test = phantom_split
    syn = CopycatGenerator(rate=1.0).fit(train, seed=0).sample(n=60, seed=0)  # planted: copies of members
    for name, ds in (("train", train), ("holdout", holdout), ("syn", syn)):
        write_dataset(ds, tmp_path / name)
    rc = main(["-q", "audit", "--train", str(tmp_path / "train"), "--holdout", str(tmp_path / "holdout"),
               "--synthetic", str(tmp_path / "syn"), "--feature", "pixel,rowmeans", "--attacks", "toy,gan_leaks",
               "--resamples", "50", "--out", str(tmp_path / "out")])
    assert rc == 0, capsys.readouterr().err
    p = json.loads((tmp_path / "out" / "report.json").read_text())["privacy"]
    toy = p["mia"]["toy"]
    assert toy["info"]["threat_model"] == "black-box (synthetic data only)"
    assert toy["patient"]["auc"]["unit"] == "patient" and toy["patient"]["auc"]["value"] > 0.7  # the planted copies
    assert set(p["mia"]) == {"toy", "gan_leaks_pixel", "gan_leaks_rowmeans", "lira_online", "lira_offline"}
    space = p["feature_spaces"]["rowmeans"]["copy_detection"]["space"]
    assert space["invariance"] == "horizontal flips (row means)" and space["dim"] == train.shape[0]
    assert main(["-q", "audit", "--train", str(tmp_path / "train"), "--holdout", str(tmp_path / "holdout"),
                 "--synthetic", str(tmp_path / "syn"), "--attacks", "toyy", "--out", str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert "toyy" in err and "toy" in err and not (tmp_path / "bad").exists()


def test_a_broken_third_party_attack_is_listed_and_raised_only_when_requested(tmp_path, monkeypatch):
    d = tmp_path / "cmraudit_broken_attack-0.1.dist-info"
    d.mkdir()
    (d / "METADATA").write_text("Metadata-Version: 2.1\nName: cmraudit-broken-attack\nVersion: 0.1\n")
    (d / "entry_points.txt").write_text("[cmraudit.attacks]\nbroken = no_such_module_xyz:Attack\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    ATTACKS.refresh()
    try:
        assert "broken" not in ATTACKS.names() and "broken" in ATTACKS.names(ok_only=False)
        from cmraudit.errors import PluginError

        with pytest.raises(PluginError, match="attack 'broken' .*failed to import: ModuleNotFoundError"):
            ATTACKS.get("broken")
    finally:
        ATTACKS.refresh()
