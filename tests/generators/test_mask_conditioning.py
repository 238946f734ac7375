"""Position-conditional mask model (mask_position_bins): slice classes, training frequencies, sampling, save/load."""
import json

import numpy as np
import pytest

from cmraudit.errors import UsageError
from cmraudit.generators.mask_model import n_slice_classes, slice_classes
from cmraudit.generators.presets import resolve_preset
from cmraudit.testing import make_toy_dataset


def test_slice_classes_golden():
    # patient a: 8 slices at ED and ES; patient b: 3 slices with gaps in slice_index, one unknown frame; c: one slice
    si = np.r_[np.arange(8), np.arange(8), [2, 5, 9], [4], [0]]
    fr = np.r_[["ED"] * 8, ["es"] * 8, ["ED"] * 3, ["12"], ["ED"]]
    pid = np.r_[["a"] * 16, ["b"] * 4, ["c"]]
    got = slice_classes(si, fr, pid, position_bins=4)
    np.testing.assert_array_equal(got[:8], [0, 0, 1, 1, 2, 2, 3, 3])  # ED: bins by rank along the stack
    np.testing.assert_array_equal(got[8:16], 4 + np.array([0, 0, 1, 1, 2, 2, 3, 3]))  # ES (case-insensitive)
    np.testing.assert_array_equal(got[16:19], [0, 1, 2])  # ranks 0, 1, 2 of 3 slices → bins 0, 1, 2
    assert got[19] == 8 and got[20] == 0  # other frame → phase 2; a single slice → bin 0
    assert n_slice_classes(4) == 12 and got.max() < n_slice_classes(4)


def test_quick_preset_conditions_the_mask_model_and_the_default_does_not():
    from cmraudit_ddpm import DDPMGenerator

    assert resolve_preset("quick")["mask_position_bins"] == 4
    assert resolve_preset("paper")["mask_position_bins"] == 0 and resolve_preset("micro")["mask_position_bins"] == 0
    assert DDPMGenerator().mask_position_bins == 0  # the reference study's unconditional mask diffusion
    with pytest.raises(UsageError, match="mask_position_bins"):
        DDPMGenerator(mask_position_bins=-1).validate_params()


@pytest.fixture(scope="module")
def conditional(tmp_path_factory):
    from cmraudit_ddpm import DDPMGenerator

    ds = make_toy_dataset(n_patients=3, slices=4, size=32)
    gen = DDPMGenerator(**{**DDPMGenerator.conformance_params(), "mask_position_bins": 2}).fit(ds, seed=0,
                                                                                                progress=False)
    path = tmp_path_factory.mktemp("cond") / "model"
    gen.save(path)
    return gen, ds, path


def test_conditional_fit_records_training_frequencies_and_samples_deterministically(conditional):
    gen, ds, _ = conditional
    mm = gen.mask_model_
    assert mm.n_classes == n_slice_classes(2) and mm.net_.num_class_embeds == n_slice_classes(2)
    expect = np.bincount(slice_classes(ds.slice_index, ds.frame, ds.patient_id, position_bins=2), minlength=6) / 12
    np.testing.assert_allclose(mm.class_freq_, expect)  # toy: all ED, 4 slices → classes 0, 0, 1, 1 per patient
    np.testing.assert_allclose(gen.mask_class_freq_, expect)
    a, b = gen.sample(n=5, seed=3), gen.sample(n=5, seed=3)
    np.testing.assert_array_equal(a.masks, b.masks)
    np.testing.assert_array_equal(a.images, b.images)
    with pytest.raises(UsageError, match="one label in 0..5 per mask"):
        mm.fit(np.asarray(ds.masks), seed=0, device=__import__("torch").device("cpu"), progress=False,
               labels=np.zeros(3, np.int64))


def test_conditional_save_load_round_trip_and_old_checkpoints(conditional, tmp_path):
    from cmraudit_ddpm import DDPMGenerator

    gen, _, path = conditional
    back = DDPMGenerator.load(path)
    assert back.mask_position_bins == 2 and back.mask_model_.n_classes == 6
    np.testing.assert_allclose(back.mask_model_.class_freq_, gen.mask_model_.class_freq_)
    np.testing.assert_array_equal(back.sample(n=4, seed=1).masks, gen.sample(n=4, seed=1).masks)
    # a checkpoint written before the parameter existed: an unconditional mask model, no class frequencies
    ds = make_toy_dataset(n_patients=2, slices=2, size=32)
    plain = DDPMGenerator(**DDPMGenerator.conformance_params()).fit(ds, seed=0, progress=False)
    plain.save(tmp_path / "old")
    cfg = json.loads((tmp_path / "old" / "config.json").read_text())
    del cfg["params"]["mask_position_bins"], cfg["fitted"]["mask_class_freq_"]
    (tmp_path / "old" / "config.json").write_text(json.dumps(cfg))
    old = DDPMGenerator.load(tmp_path / "old")
    assert old.mask_position_bins == 0 and old.mask_model_.n_classes == 0 and old.mask_model_.class_freq_ is None
    np.testing.assert_array_equal(old.sample(n=3, seed=2).masks, plain.sample(n=3, seed=2).masks)


def test_dp_fit_samples_classes_uniformly():
    """Under DP-SGD the class frequencies would be an unaccounted release: positions are drawn uniformly within the
    phase groups present."""
    from cmraudit.dp import DPConfig
    from cmraudit_ddpm import DDPMGenerator

    ds = make_toy_dataset(n_patients=4, slices=3, size=32)
    gen = DDPMGenerator(**{**DDPMGenerator.conformance_params(), "mask_position_bins": 2}).fit(
        ds, seed=0, progress=False, dp=DPConfig(epsilon=8, delta=1e-3))
    np.testing.assert_allclose(gen.mask_model_.class_freq_, [0.5, 0.5, 0, 0, 0, 0])  # toy: ED only, 2 bins
    # the class mix of a DP fit depends only on which phase groups exist, not on how many slices each has
    assert gen.sample(n=3, seed=0).masks.shape == (3, 32, 32)
