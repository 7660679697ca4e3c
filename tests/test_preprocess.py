"""Preprocessing (issue 3): grids, N4, registration, brain extraction, plausibility, saving."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from mslesion.errors import InputError
from mslesion.io import load_volume
from mslesion.preprocess import PreprocessOptions, preprocess
from mslesion.preprocess.bias import n4_correct
from mslesion.preprocess.brain import check_brain_plausible, extract_brain, stripped_foreground
from mslesion.preprocess.registration import register_rigid, resample_moving, rigid_matrix, surface_error_mm
from mslesion.preprocess.resample import isotropic_grid, reorient_canonical, resample_to_grid
from mslesion.preprocess.sitk_bridge import from_sitk, ras_matrix_to_transform, to_sitk, transform_to_ras_matrix
from mslesion.volume import Volume

from .factories import make_phantom


def _oblique_las(shape=(40, 36, 12), zooms=(0.9, 0.9, 4.0)) -> np.ndarray:
    base = np.diag([-zooms[0], zooms[1], zooms[2], 1.0])
    base[:3, 3] = [18.0, -16.0, -22.0]
    return rigid_matrix((8.0, -5.0, 15.0), (2.0, 1.0, -3.0)) @ base


def test_sitk_bridge_roundtrip_geometry() -> None:
    vol = Volume(np.random.default_rng(0).random((7, 6, 5)).astype(np.float32), _oblique_las())
    data, aff = from_sitk(to_sitk(vol))
    np.testing.assert_allclose(aff, vol.affine, atol=1e-5)
    np.testing.assert_allclose(data, vol.data)
    m = rigid_matrix((3.0, 4.0, -7.0), (1.0, -2.0, 3.0), np.array([10.0, 5.0, 0.0]))
    np.testing.assert_allclose(transform_to_ras_matrix(ras_matrix_to_transform(m)), m, atol=1e-9)


def test_working_grid_and_back_keeps_world_positions() -> None:
    """A blob at a known world point stays there on the working grid and after to_native."""
    shape = (40, 36, 12)
    aff = _oblique_las(shape)
    data = np.zeros(shape, np.float32)
    data[18:24, 14:20, 5:8] = 1.0
    native = Volume(data, aff)
    canon = reorient_canonical(native)
    assert np.all(np.diag(canon.affine)[:3] * np.sign(np.diag(canon.affine)[:3]) > 0)
    gshape, gaff = isotropic_grid(canon, 1.0)
    work = resample_to_grid(canon, gshape, gaff, order=1)
    assert work.zooms == pytest.approx((1.0, 1.0, 1.0))

    def centre(v: Volume) -> np.ndarray:
        c = ndimage.center_of_mass(v.data)
        return (v.affine @ np.array([*c, 1.0]))[:3]

    assert np.linalg.norm(centre(work) - centre(native)) < 1.0
    from mslesion.preprocess.pipeline import Preprocessed

    pre = Preprocessed(native=native, images={"flair": work}, brain_mask=work.with_data(work.data > 0))
    back = pre.to_native(work, order=1)
    assert back.same_grid(native)
    assert np.linalg.norm(centre(back) - centre(native)) < 0.5
    assert np.corrcoef(back.data.ravel(), data.ravel())[0, 1] > 0.8


def test_n4_removes_a_smooth_bias_field() -> None:
    ph = make_phantom(shape=(64, 64, 48), zooms=(2.5, 2.5, 3.0), lesions=())
    grid = np.indices(ph.flair.shape).astype(np.float32)
    field = np.exp(0.35 * (grid[0] / 63 - 0.5) + 0.25 * (grid[2] / 47 - 0.5))
    biased = ph.flair.with_data(ph.flair.data * field)
    wm = ndimage.binary_erosion((ph.flair.data > 400) & (ph.flair.data < 500), iterations=1)  # white matter
    cv = lambda d: float(d[wm].std() / d[wm].mean())  # noqa: E731
    corrected = n4_correct(biased)
    assert cv(corrected.data) < 0.6 * cv(biased.data)
    assert np.all(corrected.data[ph.flair.data == 0] == 0)


def test_rigid_registration_recovers_known_transform() -> None:
    # unequal axes and off-centre lesions: no rotation leaves the phantom unchanged
    ph = make_phantom(shape=(72, 56, 40), zooms=(2.5, 2.5, 3.0), lesions=((44, 36, 24, 3.0), (24, 20, 14, 2.5)))
    fixed = ph.flair
    brain = ph.brain.data > 0
    surface = brain & ~ndimage.binary_erosion(brain)
    pts = (np.c_[np.array(np.nonzero(surface)).T, np.ones(surface.sum())] @ fixed.affine.T)[:, :3]
    s = rigid_matrix((4.0, -3.0, 6.0), (5.0, -4.0, 3.0), pts.mean(0))
    moving = resample_moving(ph.t1, ph.t1, s)
    est = register_rigid(fixed, moving, fixed_mask=ndimage.binary_dilation(brain, iterations=2))
    truth = np.linalg.inv(s)
    assert surface_error_mm(np.eye(4), truth, pts) > 5.0
    assert surface_error_mm(est, truth, pts) < 2.5  # smooth phantom; real data: see the realdata test (< 1 mm)


def test_contrast_far_off_in_world_space_is_registered_from_the_head_centres() -> None:
    """A T1 whose header puts the head 90 mm from the FLAIR's (another place in world space) is aligned by
    starting from the head centres; the offset is kept in the image's meta for the report."""
    from mslesion.preprocess.registration import centre_start

    assert centre_start(np.zeros(3), np.array([3.0, -4.0, 0.0]))[0] is None    # a few cm: world coordinates
    init, offset = centre_start(np.zeros(3), np.array([0.0, 80.0, -40.0]))
    assert offset == [0.0, 80.0, -40.0] and np.allclose(init[:3, 3], offset)
    ph = make_phantom(lesions=((32, 40, 24, 3.0),))
    aff = ph.t1.affine.copy()
    aff[:3, 3] += (0.0, 80.0, -40.0)
    pre = preprocess({"flair": ph.flair, "t1": Volume(ph.t1.data, aff)})
    t1 = pre.images["t1"]
    assert np.allclose(t1.meta["world_offset_mm"], (0.0, 80.0, -40.0), atol=2.0)
    # the phantom's T1 sits exactly where its FLAIR does before the header shift: the right transform is that shift
    assert np.allclose(t1.meta["to_flair"][:3, :3], np.eye(3), atol=0.02)
    assert np.allclose(t1.meta["to_flair"][:3, 3], (0.0, 80.0, -40.0), atol=1.5)


def test_resample_moving_convention() -> None:
    """transform maps fixed points to moving points: a pure shift moves content the other way."""
    data = np.zeros((20, 20, 20), np.float32)
    data[10, 10, 10] = 1.0
    vol = Volume(data, np.eye(4))
    shifted = resample_moving(vol, vol, rigid_matrix((0, 0, 0), (3.0, 0, 0)), order=0)
    assert np.argwhere(shifted.data == 1).tolist() == [[7, 10, 10]]


def test_plausibility_refuses_non_brain_sizes() -> None:
    aff = np.eye(4)
    small = Volume(np.ones((50, 50, 50), np.uint8), aff)           # 125 ml
    ok = Volume(np.ones((110, 110, 110), np.uint8), aff)           # 1331 ml
    with pytest.raises(InputError, match="does not look like a brain"):
        check_brain_plausible(small, Path("x.nii.gz"))
    assert check_brain_plausible(ok) == pytest.approx(1331.0)


def test_stripped_input_keeps_its_foreground() -> None:
    ph = make_phantom(shape=(64, 64, 48), zooms=(2.5, 2.5, 3.0), lesions=())
    stripped = ph.flair.with_data(np.where(ph.brain.data > 0, ph.flair.data, 0).astype(np.float32))
    fg = stripped_foreground(stripped.data, stripped.voxel_volume_ml)
    assert fg is not None
    truth = ph.brain.data > 0
    assert 2 * (fg & truth).sum() / (fg.sum() + truth.sum()) > 0.98
    assert stripped_foreground(np.random.default_rng(0).random((30, 30, 30)), 1.0) is None  # no zero background


def test_preprocess_saves_each_step_and_normalises(tmp_path: Path) -> None:
    ph = make_phantom(lesions=((32, 40, 24, 3.0),))
    pre = preprocess({"flair": ph.flair, "t1": ph.t1}, PreprocessOptions(save_dir=tmp_path / "pre"))
    mask = pre.brain_mask.data > 0
    assert pre.flair.zooms == pytest.approx((1.0, 1.0, 1.0))
    for img in pre.images.values():
        assert img.same_grid(pre.brain_mask)
        lo, med, hi = np.percentile(img.data[mask], [1, 50, 99])
        assert abs(med) < 1e-3 and (hi - lo) / 4 == pytest.approx(1.0, abs=0.02)
    names = {p.name for p in (tmp_path / "pre").glob("*.nii.gz")}
    assert {"flair_resampled.nii.gz", "flair_n4.nii.gz", "brain_mask.nii.gz", "flair.nii.gz", "t1.nii.gz"} <= names
    pngs = sorted((tmp_path / "pre" / "qc").glob("*.png"))
    assert len(pngs) >= 5 and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert {"resample", "n4_flair", "brain_mask", "register_t1"} <= set(pre.timings)


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.parametrize("method, minimum", [("deepbet", 0.95), ("template", 0.82)])
def test_brain_extraction_t1_with_skull_vs_robex(shared_data: Path, method: str, minimum: float) -> None:
    """deepbet meets the issue's 0.95 target (0.967 measured); the template method is the fallback (0.88)."""
    from mslesion.preprocess.resample import resample_like

    t1 = reorient_canonical(load_volume(shared_data / "skull" / "robex" / "t1.nii.gz"))
    ref = load_volume(shared_data / "skull" / "robex" / "brainmask.nii.gz")
    shape, aff = isotropic_grid(t1, 1.0)
    mask = extract_brain(n4_correct(resample_to_grid(t1, shape, aff)), "t1", method=method, device="cpu")
    assert mask.meta["brain_method"].startswith(method)
    native = resample_like(mask.with_data(mask.data.astype(np.float32)), ref, order=1).data > 0.5
    r = ref.data > 0.5
    d = 2 * (native & r).sum() / (native.sum() + r.sum())
    assert d > minimum


def _big_head() -> Volume:
    """A 1 mm grid that is mostly foreground (head-sized, not an already-stripped brain)."""
    data = 100 + np.random.default_rng(0).normal(0, 5, (112, 112, 112)).astype(np.float32)
    return Volume(data, np.diag([1.0, 1.0, 1.0, 1.0]))


def test_brain_extraction_falls_back_to_template(monkeypatch: pytest.MonkeyPatch) -> None:
    """deepbet failing, or finding no plausible brain in a brain-sized head, hands over to the template fit."""
    from mslesion.preprocess import brain, brain_net

    vol = _big_head()
    calls = []

    def fake_template(v, data, head, contrast="flair"):
        calls.append(contrast)
        return v.with_data(head.astype(np.uint8), brain_method="template+refine")

    monkeypatch.setattr(brain, "template_brain", fake_template)

    def failing(data, device="auto"):
        raise brain_net.BrainNetError("deepbet failed: test")

    monkeypatch.setattr(brain_net, "deepbet_mask", failing)
    assert extract_brain(vol).meta["brain_method"] == "template+refine"
    tiny = np.zeros(vol.shape, bool)
    tiny[50:60, 50:60, 50:60] = True  # 1 ml: not a brain
    monkeypatch.setattr(brain_net, "deepbet_mask", lambda data, device="auto": tiny)
    assert extract_brain(vol).meta["brain_method"] == "template+refine"
    plausible = np.zeros(vol.shape, bool)
    plausible[6:106, 6:106, 6:106] = True  # 1000 ml, inside the head
    monkeypatch.setattr(brain_net, "deepbet_mask", lambda data, device="auto": plausible)
    found = extract_brain(vol)
    assert found.meta["brain_method"] == "deepbet" and np.array_equal(found.data.astype(bool), plausible)
    assert len(calls) == 2
    with pytest.raises(InputError, match="brain-extraction method"):
        extract_brain(vol, method="bet")


def test_deepbet_weights_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Weights that differ from the validated ones are refused with the file named."""
    from mslesion.errors import ModelError
    from mslesion.preprocess import brain_net

    brain_net._load_extractor.cache_clear()
    monkeypatch.setitem(brain_net.WEIGHTS_SHA256, "model.pt", "0" * 64)
    try:
        with pytest.raises(ModelError, match="model.pt.*sha256"):
            brain_net.load_extractor("cpu")
    finally:
        brain_net._load_extractor.cache_clear()


def test_models_command_verifies_the_deepbet_weights(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from mslesion.cli import main
    from mslesion.preprocess import brain_net

    assert main(["models", "--verify"]) == 0
    assert "deepbet:" in capsys.readouterr().out
    monkeypatch.setitem(brain_net.WEIGHTS_SHA256, "bbox_model.pt", "f" * 64)
    assert main(["models", "--verify"]) == 1
    assert "deepbet:" in (out := capsys.readouterr().out) and "SHA256 MISMATCH" in out


def test_deepbet_on_an_empty_image_is_a_named_failure() -> None:
    from mslesion.preprocess import brain_net

    with pytest.raises(brain_net.BrainNetError, match="empty"):
        brain_net.deepbet_mask(np.zeros((40, 40, 40), np.float32), "cpu")


def _synthetic_head() -> tuple[np.ndarray, np.ndarray]:
    z, y, x = np.mgrid[:150, :180, :150].astype(np.float32)
    r = ((z - 75) / 62) ** 2 + ((y - 90) / 78) ** 2 + ((x - 75) / 58) ** 2
    data = np.where(r < 1.0, 600.0, np.where(r < 1.25, 80.0, np.where(r < 1.45, 900.0, 0.0))).astype(np.float32)
    return data, r < 1.0


@pytest.mark.gpu
def test_deepbet_on_cuda_matches_cpu() -> None:
    pytest.importorskip("deepbet")  # a bare device machine may lack it (no index there)
    from mslesion.preprocess.brain_net import deepbet_mask

    data, _ = _synthetic_head()
    cpu, gpu = deepbet_mask(data, "cpu"), deepbet_mask(data, "cuda")
    assert 2 * (cpu & gpu).sum() / (cpu.sum() + gpu.sum()) > 0.99


def test_deepbet_finds_a_synthetic_head_brain() -> None:
    """On a 1 mm synthetic head (bright brain-like ellipsoid in a dark skull ring inside a scalp shell)
    the network returns a mask inside the skull that covers most of the inner ellipsoid."""
    from mslesion.preprocess.brain_net import deepbet_mask

    data, inner = _synthetic_head()
    mask = deepbet_mask(data, "cpu")
    assert (mask & inner).sum() / max(1, mask.sum()) > 0.9  # almost nothing outside the skull (0.97 measured)
    assert (mask & inner).sum() / inner.sum() > 0.95  # and nearly all of the "brain" (1.00 measured)
@pytest.mark.realdata
@pytest.mark.slow
def test_registration_real_t1_to_flair(shared_data: Path) -> None:
    d = shared_data / "brain_ms" / "ljubljana" / "patient26"
    flair = reorient_canonical(load_volume(d / "flair.nii.gz"))
    t1 = reorient_canonical(load_volume(d / "t1.nii.gz"))
    brain = flair.data > 0
    surface = brain & ~ndimage.binary_erosion(brain)
    pts = (np.c_[np.array(np.nonzero(surface)).T, np.ones(surface.sum())] @ flair.affine.T)[:, :3]
    s = rigid_matrix((8.0, -6.0, 9.0), (-7.0, 8.0, 6.0), pts.mean(0))
    moving, mask = resample_moving(t1, t1, s), ndimage.binary_dilation(brain, iterations=3)
    threads = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    est = register_rigid(flair, moving, fixed_mask=mask)
    assert surface_error_mm(est, np.linalg.inv(s), pts) < 1.0
    # reproducible: the same fit on every run (multi-threaded ITK metrics are not), default restored
    assert np.array_equal(est, register_rigid(flair, moving, fixed_mask=mask))
    assert sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() == threads


@pytest.mark.realdata
@pytest.mark.slow
def test_spine_volume_is_refused(shared_data: Path) -> None:
    flair = load_volume(shared_data / "spine" / "sct_testing" / "t2" / "t2.nii.gz")
    with pytest.raises(InputError, match="does not look like a brain"):
        preprocess({"flair": flair}, PreprocessOptions(check_brain=True))


def test_normalisation_ignores_scanner_scale() -> None:
    ph = make_phantom(lesions=((32, 40, 24, 3.0),))
    opts = PreprocessOptions(skull_strip=False)
    a = preprocess({"flair": ph.flair}, opts)
    b = preprocess({"flair": ph.flair.with_data(ph.flair.data * 7.3)}, opts)
    mask = a.brain_mask.data > 0
    assert np.array_equal(mask, b.brain_mask.data > 0)
    diff = np.abs(a.flair.data - b.flair.data)[mask]
    assert np.percentile(diff, 99) < 0.05


def test_n4_is_scale_invariant() -> None:
    ph = make_phantom(shape=(64, 64, 48), zooms=(2.5, 2.5, 3.0), lesions=())
    grid = np.indices(ph.flair.shape).astype(np.float32)
    biased = ph.flair.data * np.exp(0.3 * (grid[0] / 63 - 0.5))
    big = n4_correct(ph.flair.with_data(biased)).data
    tiny = n4_correct(ph.flair.with_data(biased * 1e-3)).data * 1e3
    fg = ph.flair.data > 0
    assert np.percentile(np.abs(big - tiny)[fg] / big[fg].mean(), 99) < 0.01


def test_bright_rim_trims_scalp_the_mask_took_in_but_keeps_a_juxtacortical_lesion() -> None:
    """A mask that reaches into bright scalp loses that rim; a bright lesion under the cortex stays."""
    from mslesion.preprocess.brain_rim import bright_rim, trim_bright_rim

    shape, centre = (80, 80, 80), (40, 40, 40)
    zz = np.indices(shape)
    r = np.sqrt(sum((zz[i] - centre[i]) ** 2 for i in range(3)))
    z = np.full(shape, -3.0, np.float32)               # air
    z[r < 34] = 2.0                                    # scalp fat: bright on FLAIR
    z[r < 31] = -2.5                                   # bone / CSF: dark
    z[r < 28] = 0.0                                    # brain
    lesion = np.sqrt((zz[0] - 40) ** 2 + (zz[1] - 40) ** 2 + (zz[2] - 65) ** 2) < 3.0  # just under the surface
    z[lesion] = 1.5
    mask = r < 28
    mask[(r < 33) & (zz[2] > 60)] = True               # the extractor reached into the scalp at the vertex
    rim = bright_rim(z, mask, (1.0, 1.0, 1.0))
    scalp_in_mask = mask & (r >= 31)
    assert rim[scalp_in_mask].mean() > 0.95
    assert not rim[lesion].any() and not rim[r < 28].any()
    trimmed = trim_bright_rim(z, mask, (1.0, 1.0, 1.0))
    assert trimmed[lesion].all() and not trimmed[scalp_in_mask].any()
    # a mask that ends at the brain (or a skull-stripped image with nothing outside) is left as it is
    assert not bright_rim(z, r < 28, (1.0, 1.0, 1.0)).any()
    stripped = np.where(r < 28, z, 0.0)
    assert not bright_rim(stripped, r < 28, (1.0, 1.0, 1.0)).any()


def test_thick_native_voxels_read_the_peak_of_their_whole_slab() -> None:
    """On a 4 mm FLAIR grid, a 1 mm lesion off the slice centre is missed by point sampling; the
    slab's peak finds it, and only in the slice whose slab holds it."""
    from mslesion.preprocess.resample import resample_like, slab_peak, slab_reach

    assert [slab_reach(r) for r in (1.5, 2.0, 2.2, 3.0, 4.4)] == [1, 1, 1, 2, 2]
    native = Volume(np.zeros((16, 16, 10), np.float32), np.diag([1.0, 1.0, 4.0, 1.0]))
    shape, affine = isotropic_grid(native, 1.0)
    assert shape == (16, 16, 40)
    prob = np.zeros(shape, np.float32)
    # native slice 5 covers working slices 20-23 (centre 21.5); this lesion fills slice 23 only
    prob[6:10, 6:10, 23] = 1.0
    work = Volume(prob, affine)
    point = resample_like(work, native, order=1).data
    peak_work = slab_peak(work, native)
    assert peak_work is not None
    peak = resample_like(peak_work, native, order=1).data
    assert point[8, 8, 5] == 0.0 and peak[8, 8, 5] == pytest.approx(1.0)
    assert peak[8, 8, 3] == 0.0 and peak[8, 8, 7] == 0.0 and peak[2, 2, 5] == 0.0
    # a grid without thick slices is left alone
    assert slab_peak(work, Volume(np.zeros((16, 16, 40), np.float32), affine)) is None
