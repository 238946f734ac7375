import numpy as np
import pytest

from cmraudit.utility.metrics import (
    compute_asd,
    compute_dice,
    compute_hd95,
    compute_iou,
    missed_penalty_mm,
    score_segmentation,
)


def _square(y0, x0, s, shape=(40, 40)):
    m = np.zeros(shape, bool)
    m[y0 : y0 + s, x0 : x0 + s] = True
    return m


def test_dice_iou_known_overlap():
    a, b = _square(10, 10, 10), _square(10, 15, 10)  # overlap 10x5 = 50 of 100 + 100
    assert compute_dice(a, b) == pytest.approx(0.5)
    assert compute_iou(a, b) == pytest.approx(50 / 150)
    assert compute_dice(a, a) == 1.0
    assert np.isnan(compute_dice(np.zeros((5, 5)), np.zeros((5, 5))))


def test_hd95_lines_with_anisotropic_spacing():
    gt = np.zeros((30, 30), bool)
    gt[10, 5:25] = True
    pred = np.zeros_like(gt)
    pred[13, 5:25] = True  # every boundary pixel 3 rows away
    assert compute_hd95(pred, gt, spacing=(2.0, 1.0)) == pytest.approx(6.0)
    assert compute_asd(pred, gt, spacing=(2.0, 1.0)) == pytest.approx(6.0)
    assert compute_hd95(gt, gt, spacing=(2.0, 1.0)) == 0.0


def test_hd95_missed_structure_penalty_and_both_empty():
    gt = _square(5, 5, 6)
    empty = np.zeros_like(gt)
    assert compute_hd95(empty, gt, spacing=(1.5, 1.5)) == pytest.approx(np.hypot(60, 60))
    assert compute_hd95(gt, empty, spacing=(1.5, 1.5)) == missed_penalty_mm((40, 40), (1.5, 1.5))
    assert np.isnan(compute_hd95(empty, empty))


def test_score_segmentation_honours_annotated_bits_and_patients():
    gt = np.zeros((3, 40, 40), np.uint8)
    gt[:, 10:20, 10:20] = 3  # LV
    gt[:, 25:30, 25:30] = 1  # RV
    pred = gt.copy()
    pred[0][pred[0] == 1] = 0  # RV missed on slice 0
    pred[2, 10:20, 15:25] = 3  # LV shifted on slice 2 (patient b)
    pred[2, 10:20, 10:15] = 0
    ann = np.array([7, 7, 7], np.uint8)  # RV annotated on slice 0 → the miss there is scored
    sc = score_segmentation(pred=pred, gt=gt, patient_id=np.array(["a", "a", "b"]), annotated=ann,
                            spacing_mm=np.full((3, 2), 1.0))
    assert list(sc.patients) == ["a", "b"]
    # patient a RV: slice0 missed (25 gt px, 0 pred), slice1 perfect → pooled Dice 2*25/(50+25)
    assert sc.dice[0, 0] == pytest.approx(50 / 75)
    assert sc.hd95_mm[0, 0] == pytest.approx((missed_penalty_mm((40, 40), (1, 1)) + 0.0) / 2)
    assert sc.dice[1, 2] == pytest.approx(0.5)
    assert np.isnan(sc.dice[:, 1]).all()  # MYO absent everywhere: not scored
    # RV unknown on slice 0 → the miss there is not scored
    sc2 = score_segmentation(pred=pred, gt=gt, patient_id=np.array(["a", "a", "b"]),
                             annotated=np.array([4, 7, 7], np.uint8))
    assert sc2.dice[0, 0] == pytest.approx(1.0)
    assert sc2.spacing_assumed
