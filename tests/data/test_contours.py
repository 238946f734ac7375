"""Contour → mask geometry: x = column, y = row, pixel centres at integer coordinates."""
import numpy as np
import pytest

from cmraudit.data.importers.contours import contours_to_mask, fill_polygon, read_contour
from cmraudit.errors import DataError


def _rect(x0, x1, y0, y1):
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=float)


def test_fill_is_x_column_y_row_with_integer_centres():
    # a wide rectangle along pixel edges: columns 1..5, rows 1..2 -> exactly 10 pixels
    m = fill_polygon(_rect(0.5, 5.5, 0.5, 2.5), (8, 8))
    expected = np.zeros((8, 8), bool)
    expected[1:3, 1:6] = True
    np.testing.assert_array_equal(m, expected)


def test_disc_area_matches_polygon_area():
    t = np.linspace(0, 2 * np.pi, 200, endpoint=False)
    pts = np.c_[40 + 15 * np.cos(t), 30 + 15 * np.sin(t)]
    m = fill_polygon(pts, (64, 80))
    assert abs(m.sum() - np.pi * 15**2) < 0.02 * np.pi * 15**2
    rr, cc = np.nonzero(m)
    assert rr.mean() == pytest.approx(30, abs=0.2) and cc.mean() == pytest.approx(40, abs=0.2)


def test_mask_labels_lv_and_myo_ring():
    m = contours_to_mask(_rect(9.5, 19.5, 9.5, 19.5), _rect(5.5, 23.5, 5.5, 23.5), (32, 32))
    assert (m == 3).sum() == 100 and (m == 2).sum() == 18 * 18 - 100 and set(np.unique(m)) == {0, 2, 3}
    lv_only = contours_to_mask(_rect(9.5, 19.5, 9.5, 19.5), None, (32, 32))
    assert set(np.unique(lv_only)) == {0, 3}


def test_epicardium_not_around_endocardium_is_rejected():
    with pytest.raises(DataError, match="outside this epicardium"):
        contours_to_mask(_rect(9.5, 19.5, 9.5, 19.5), _rect(15.5, 30.5, 15.5, 30.5), (32, 32), where="x")


def test_read_contour_errors(tmp_path):
    p = tmp_path / "c.txt"
    p.write_text("1 2\n3 4\n")
    with pytest.raises(DataError, match=r"c\.txt: contour has 2 point\(s\)"):
        read_contour(p)
    p.write_text("1 2\n3 4\n5 nan\n")
    with pytest.raises(DataError, match="NaN or Inf"):
        read_contour(p)
    p.write_text("1 2\n300 4\n5 6\n")
    with pytest.raises(DataError, match="outside the 256×256 image"):
        read_contour(p, shape=(256, 256))
