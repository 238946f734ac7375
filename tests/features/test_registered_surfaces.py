"""The registered search's correlation kernels against brute force: every shift, every view, least squares in numpy."""
import numpy as np
import pytest
import torch

from cmraudit.data.phantom import PhantomConfig, make_phantom
from cmraudit.features.alignment import RegisteredSearch, _disk, _rotate_each, dihedral_views


@pytest.fixture(scope="module")
def prepared():
    imgs = np.asarray(make_phantom(PhantomConfig(subjects=3, slices=2, size=64), seed=4).images)
    rs = RegisteredSearch()
    return rs, rs.prepare(imgs), rs.prepare(imgs[::-1].copy())


def _masked(size, rs):
    m, _ = rs._shifts(size, size)
    return m, _disk(size, size / 2 - 2 * m).numpy().astype(bool)


def test_coarse_views_are_each_dihedral_element_rotated_by_each_angle(prepared):
    """_views rotates each query once per angle and flips those; view d · n_a + a must be element d rotated by a."""
    from cmraudit.features.alignment import _rotate

    rs, _, q = prepared
    Q = q["coarse"][:3]
    angles = rs._angles(rs.coarse_rot_step_deg)
    got = rs._views(Q, angles)
    assert got.shape == (3, 8 * len(angles), *Q.shape[-2:])
    for d, elem in enumerate(dihedral_views(Q)):
        for a, ang in enumerate(angles):
            torch.testing.assert_close(got[:, d * len(angles) + a], _rotate(elem, ang), atol=1e-5, rtol=0)


def test_coarse_surfaces_equal_brute_force_correlation(prepared):
    rs, base, q = prepared
    Q, B = q["coarse"][:3], base["coarse"]
    cand = np.array([[0, 5], [2, 3], [1, 1]])
    with torch.no_grad():
        got = rs._coarse_surfaces(Q, B, cand).double().numpy()  # [3, 2, n_views, S, S]
        views = rs._views(Q, rs._angles(rs.coarse_rot_step_deg)).double().numpy()
    m, W = _masked(Q.shape[-1], rs)
    for i in range(3):
        for j in range(2):
            t = B[cand[i, j]].double().numpy()
            for v in (0, 7, 19, len(views[i]) - 1):
                for a, dy in enumerate(range(-m, m + 1)):
                    for c, dx in enumerate(range(-m, m + 1)):
                        td = np.roll(t, (dy, dx), axis=(0, 1))[W]  # t(p − d) on the disk
                        corr = np.corrcoef(views[i, v][W], td)[0, 1]
                        assert got[i, j, v, a, c] == pytest.approx(1 - max(corr, 0) ** 2, abs=2e-5)


def test_fine_surfaces_equal_brute_force_least_squares(prepared):
    rs, base, q = prepared
    Q, B = q["fine"][:3], base["fine"]
    rows, views = np.array([4, 0, 2]), np.array([0, 13, 27])
    with torch.no_grad():
        got = rs._fine_surfaces(Q, B, rows, views).numpy()  # [3, 3, S, S]
    size = Q.shape[-1]
    m, W = _masked(size, rs)
    n_a = len(rs._angles(rs.coarse_rot_step_deg))
    c_angles = np.array(rs._angles(rs.coarse_rot_step_deg))
    for i in range(3):
        elem = dihedral_views(Q[i : i + 1])[views[i] // n_a]
        for r, off in enumerate((-rs.rot_step_deg, 0.0, rs.rot_step_deg)):
            ang = float(np.clip(c_angles[views[i] % n_a] + off, -rs.max_rotation_deg, rs.max_rotation_deg))
            v = _rotate_each(elem, torch.tensor([ang]))[0].double().numpy()[W]
            X = np.stack([v**k for k in range(rs.degree + 1)], 1)
            t = B[rows[i]].double().numpy()
            for a, dy in enumerate(range(-m, m + 1)):
                for c, dx in enumerate(range(-m, m + 1)):
                    td = np.roll(t, (dy, dx), axis=(0, 1))[W]
                    res = td - X @ np.linalg.lstsq(X, td, rcond=None)[0]
                    rho = (res @ res) / ((td - td.mean()) @ (td - td.mean()))
                    assert got[i, r, a, c] == pytest.approx(min(max(rho, 0), 1), abs=2e-5)


def test_fine_window_equals_the_full_surface_at_its_shifts(prepared):
    """The windowed refinement computes the same residuals as the full one at the shifts it keeps, for centres
    anywhere in the domain, with and without the base's cached window sums."""
    rs, base, q = prepared
    Q, B = q["fine"][:3], base["fine"]
    rows, views = np.array([4, 0, 2]), np.array([0, 13, 27])
    m, w = rs._window(Q.shape[-1])[0], rs.fine_window_px
    centre = torch.tensor([[0, 0], [-(m - w), m - w], [1, -2]])
    sums = rs._base_sums(base, rows[:, None])["fine"]
    with torch.no_grad():
        full = rs._fine_surfaces(Q, B, rows, views)  # [3, 3, 2m + 1, 2m + 1]
        for s in (None, sums):
            win = rs._fine_surfaces(Q, B, rows, views, sums=s, centre=centre)  # [3, 3, 2w + 1, 2w + 1]
            assert win.shape[-1] == 2 * w + 1
            for i, (cy, cx) in enumerate(centre.tolist()):
                ref = full[i, :, cy - w + m : cy + w + m + 1, cx - w + m : cx + w + m + 1]
                torch.testing.assert_close(win[i], ref, atol=2e-5, rtol=0)


def test_a_window_whose_best_shift_is_on_its_edge_is_refined_over_every_shift(prepared):
    """A copy shifted by +4 px refined around a wrong centre (−2, −2): the window's best shift sits on its edge, so
    the pair is refined over every shift and gets the full search's residual; around the right centre (4, 4), kept
    inside the domain as (2, 2), the window gives it too."""
    rs, base, _ = prepared
    B = base["fine"]
    t = B[1:2]
    shifted = {"fine": torch.roll(t, (4, 4), (-2, -1)), "coarse": None}
    rows, views = np.array([[1]]), np.array([[2]])  # view 2: the identity at the coarse angle 0°
    with torch.no_grad():
        full = rs._refine(shifted["fine"], B, rows, views)
        wrong = rs._refine(shifted["fine"], B, rows, views, centres=np.array([[[-2, -2]]]))
        right = rs._refine(shifted["fine"], B, rows, views, centres=np.array([[[4, 4]]]))
        ungated = rs._fine_surfaces(shifted["fine"], B, rows[:, 0], views[:, 0], centre=torch.tensor([[-2, -2]]))
    assert full[0, 0] < 1e-3  # the copy is found
    assert ungated.min() > 10 * full[0, 0] + 1e-3  # the window alone would miss it: the edge rule matters
    assert wrong[0, 0] == pytest.approx(full[0, 0], abs=1e-7)
    assert right[0, 0] == pytest.approx(full[0, 0], abs=1e-5)


def test_cropped_rotations_and_views_are_the_crops_of_the_full_ones_bit_for_bit(prepared):
    """The search samples only the comparison disk's bounding box: every pixel of it must be the one the full image
    gives (each output pixel is sampled on its own, and the box is centred, so the group maps it onto itself)."""
    from cmraudit.features.alignment import _rotate
    from cmraudit.features.registration_ops import _disk_box

    rs, _, q = prepared
    for level in ("coarse", "fine"):
        Q = q[level][:4]
        size = Q.shape[-1]
        m, Wc, r0, _ = rs._window(size)
        D = Wc.shape[-1]
        assert r0 + D == size - r0  # centred
        crop = (..., slice(r0, r0 + D), slice(r0, r0 + D))
        for ang in (0.0, -15.0, 10.0):
            assert torch.equal(_rotate(Q, ang, (r0, D)), _rotate(Q, ang)[crop])
        deg = torch.tensor([-25.0, 5.0, 0.0, 20.0])
        assert torch.equal(_rotate_each(Q, deg, (r0, D)), _rotate_each(Q, deg)[crop])
        angles = rs._angles(rs.coarse_rot_step_deg)
        assert torch.equal(rs._views(Q, angles, (r0, D)), rs._views(Q, angles)[crop])
    for size in (16, 24, 32, 48, 96, 128):  # other image sizes and shift ranges keep the box centred
        for m in {1, 2, rs._shifts(size, size)[0]}:
            W, r0, _ = _disk_box(size, size / 2 - 2 * m)
            assert r0 + W.shape[-1] == size - r0


def test_each_query_gets_its_own_dihedral_element():
    from cmraudit.features.registration_ops import dihedral_each

    x = torch.arange(5 * 6 * 6, dtype=torch.float32).reshape(5, 6, 6)
    elem = torch.tensor([7, 0, 3, 7, 4])
    full = torch.stack(dihedral_views(x))  # [8, 5, 6, 6]
    assert torch.equal(dihedral_each(x, elem), full[elem, torch.arange(5)])


def test_candidates_sharing_a_view_share_one_basis_and_get_the_same_residuals(prepared):
    """_refine computes one basis per distinct (query, coarse view); the residuals must be those of refining each
    candidate alone, bit for bit, whether the views are shared or not."""
    rs, base, q = prepared
    Q, B = q["fine"][:3], base["fine"]
    rows = np.array([[4, 0, 2], [1, 3, 5], [2, 2, 0]])
    views = np.array([[0, 0, 13], [27, 5, 27], [9, 9, 9]])  # shared and distinct views
    centres = np.array([[[0, 0], [1, -1], [4, 4]], [[-2, 3], [0, 0], [0, 1]], [[2, 2], [-4, 0], [0, 0]]])
    with torch.no_grad():
        for c in (None, centres):
            got = rs._refine(Q, B, rows, views, centres=c)
            for j in range(rows.shape[1]):
                alone = rs._refine(Q, B, rows[:, j : j + 1], views[:, j : j + 1],
                                   centres=None if c is None else c[:, j : j + 1])
                np.testing.assert_array_equal(got[:, j], alone[:, 0])
