import json

import numpy as np
import pytest

from cmraudit.data.dataset import Dataset
from cmraudit.estimates import is_skipped
from cmraudit.fidelity.evaluate import evaluate_fidelity
from cmraudit.fidelity.lpips_local import find_lpips_weights


def _toy(n, seed, noise=0.05, size=32, tag="p"):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    ims, mks = [], []
    for _ in range(n):
        cy, cx, s = size / 2 + rng.uniform(-3, 3), size / 2 + rng.uniform(-3, 3), rng.uniform(0.8, 1.2)
        r = np.hypot(yy - cy, xx - cx) / s
        m = np.zeros((size, size), np.uint8)
        m[r < 9] = 2
        m[r < 6] = 3
        m[(np.hypot(yy - cy, xx - cx - 12 * s) < 5 * s) & (m == 0)] = 1
        im = np.where(m == 3, 0.8, np.where(m == 2, -0.3, np.where(m == 1, 0.6, -0.8))) + rng.normal(
            0, noise, (size, size)
        )
        ims.append(np.clip(im, -1, 1))
        mks.append(m)
    return Dataset(
        images=np.array(ims, np.float32),
        masks=np.array(mks),
        patient_id=np.array([f"{tag}{i // 4}" for i in range(n)], object),
        spacing_mm=np.full((n, 2), 2.0),
    )


@pytest.fixture(autouse=True)
def _no_local_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("CMRAUDIT_LPIPS_WEIGHTS", raising=False)
    monkeypatch.delenv("CMRAUDIT_INCEPTION_WEIGHTS", raising=False)


def test_report_section_shape_and_skips_without_weights():
    real, syn = _toy(60, 0), _toy(60, 1, tag="s")
    paired = Dataset(images=np.clip(real.images + 0.05, -1, 1).astype(np.float32), masks=real.masks.copy(),
                     patient_id=np.array([f"s{i}" for i in range(len(real))], object))
    res = evaluate_fidelity(
        real=real, synthetic=syn, paired=paired, features=("pixel", "radiomic", "inception"), seed=0, progress=False
    )
    d = json.loads(json.dumps(res.to_dict()))  # JSON-serialisable
    for space in ("pixel", "radiomic"):
        block = d["distribution"][space]
        for k in ("frechet_distance", "kid", "precision", "recall", "density", "coverage"):
            assert set(block[k]) >= {"value", "ci", "n", "unit"}, (space, k)
        assert 0 <= block["precision"]["value"] <= 1
    inc = d["distribution"]["inception"]
    assert is_skipped(inc) and "CMRAUDIT_INCEPTION_WEIGHTS" in inc["reason"]
    assert is_skipped(d["paired"]["lpips"]) and "CMRAUDIT_LPIPS_WEIGHTS" in d["paired"]["lpips"]["reason"]
    assert d["paired"]["psnr"]["value"] == pytest.approx(10 * np.log10(4 / 0.0025), rel=0.05)
    assert d["paired"]["psnr"]["unit"] == "patient" and d["paired"]["psnr"]["n"] == 15
    assert d["paired"]["ms_ssim"]["value"] > 0.9
    assert set(d["diversity"]["mean_pairwise_ms_ssim"]) == {"synthetic", "real"}
    assert d["mask_plausibility"]["synthetic"]["myo_closed_around_lv"]["value"] == 1.0
    assert d["mask_plausibility"]["area"]["LV"]["unit"] == "mm2"


def test_same_distribution_vs_degraded_ranks_in_every_space():
    real, same = _toy(80, 0), _toy(80, 1, tag="s")
    bad = _toy(80, 2, noise=0.5, tag="b")
    a = evaluate_fidelity(
        real=real, synthetic=same, features=("pixel", "radiomic"), seed=0, diversity_pairs=100, progress=False
    ).to_dict()
    b = evaluate_fidelity(
        real=real, synthetic=bad, features=("pixel", "radiomic"), seed=0, diversity_pairs=100, progress=False
    ).to_dict()
    for space in ("pixel", "radiomic"):
        fa, fb = a["distribution"][space], b["distribution"][space]
        assert fa["frechet_distance"]["value"] < fb["frechet_distance"]["value"]
        assert fa["kid"]["ci"][0] <= 0.0 <= fa["kid"]["ci"][1] or fa["kid"]["value"] < fb["kid"]["ci"][0]
        assert fa["precision"]["value"] > fb["precision"]["value"]
    assert (
        b["diversity"]["mean_pairwise_ms_ssim"]["synthetic"]["value"]
        < a["diversity"]["mean_pairwise_ms_ssim"]["synthetic"]["value"]
    )


def test_lpips_from_local_backbone_file(tmp_path, monkeypatch):
    torchvision = pytest.importorskip("torchvision")
    import torch

    from cmraudit.fidelity.lpips_local import compute_lpips, load_lpips

    assert find_lpips_weights(net="squeeze")[0] is None
    sd = torchvision.models.squeezenet1_1(weights=None).state_dict()
    path = tmp_path / "squeeze.pth"
    torch.save(sd, path)  # stand-in file: checks the plumbing, not a calibrated LPIPS
    monkeypatch.setenv("CMRAUDIT_LPIPS_WEIGHTS", str(path))
    found, _ = find_lpips_weights(net="squeeze")
    assert found == path
    model = load_lpips(found, net="squeeze")
    assert torch.equal(model.net.slice1[0].weight, sd["features.0.weight"])  # backbone came from the file
    x = np.random.default_rng(0).uniform(-1, 1, (2, 32, 32)).astype(np.float32)
    assert compute_lpips(x, x, model=model) == pytest.approx([0, 0], abs=1e-6)


def test_inception_weights_lookup_never_downloads(tmp_path, monkeypatch):
    from cmraudit.errors import UsageError
    from cmraudit.features.inception import InceptionFeatures, find_inception_weights

    path, reason = find_inception_weights()
    assert path is None and "inception_v3_google-0cc3c7bd.pth" in reason
    monkeypatch.setenv("CMRAUDIT_INCEPTION_WEIGHTS", str(tmp_path / "missing.pth"))
    path, reason = find_inception_weights()
    assert path is None and "missing.pth" in reason
    with pytest.raises(UsageError):
        InceptionFeatures().fit()
    ckpt = tmp_path / "torch" / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    (ckpt / "inception_v3_google-0cc3c7bd.pth").write_bytes(b"")
    monkeypatch.delenv("CMRAUDIT_INCEPTION_WEIGHTS")
    assert find_inception_weights()[0] == ckpt / "inception_v3_google-0cc3c7bd.pth"
