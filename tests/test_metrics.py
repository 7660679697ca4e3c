"""Dice, lesion-wise detection and volume difference on masks with known answers."""
from __future__ import annotations

import numpy as np
import pytest

from mslesion.lesions import find_lesions, remove_small
from mslesion.metrics import dice, evaluate, lesion_detection, score_arrays
from mslesion.volume import Volume

from .factories import ball, make_affine


def test_dice_known_values():
    a = np.zeros((10, 10, 10), bool)
    b = a.copy()
    a[:4] = True
    b[2:6] = True
    assert dice(a, b) == pytest.approx(2 * 200 / 800)
    assert dice(a, a) == 1.0
    assert dice(np.zeros_like(a), np.zeros_like(a)) == 1.0


def test_lesion_detection_counts():
    shape = (40, 40, 40)
    ref = ball(shape, (10, 10, 10), 3) | ball(shape, (30, 30, 30), 3) | ball(shape, (10, 30, 10), 2)
    pred = ball(shape, (11, 10, 10), 2) | ball(shape, (20, 5, 35), 2)  # one hit, one false positive
    n_ref, det, n_pred, tp = lesion_detection(pred, ref)
    assert (n_ref, det, n_pred, tp) == (3, 1, 2, 1)
    s = score_arrays(pred, ref, voxel_ml=0.001)
    assert s.lesion_sensitivity == pytest.approx(1 / 3)
    assert s.lesion_precision == pytest.approx(1 / 2)
    assert s.lesion_f1 == pytest.approx(2 * (1 / 3) * 0.5 / (1 / 3 + 0.5))
    assert s.abs_volume_diff_ml == pytest.approx(abs(pred.sum() - ref.sum()) / 1000)


def test_connectivity_changes_lesion_count():
    m = np.zeros((5, 5, 5), bool)
    m[1, 1, 1] = m[2, 2, 2] = True  # touch only at a corner
    assert lesion_detection(m, m, 26)[0] == 1
    assert lesion_detection(m, m, 18)[0] == 2


def test_evaluate_resamples_prediction_to_reference_grid():
    shape = (40, 40, 40)
    ref_mask = ball(shape, (20, 20, 20), 6)
    ref = Volume(ref_mask.astype(np.float32), make_affine(shape=shape))
    # the same sphere on a 2 mm grid covering the same world box
    coarse_shape = (20, 20, 20)
    caff = make_affine((2.0, 2.0, 2.0), origin=ref.affine[:3, 3] + 0.5, shape=coarse_shape)
    world = np.indices(coarse_shape).reshape(3, -1).T * 2.0 + caff[:3, 3]
    centre = ref.affine[:3, 3] + 20
    coarse = (np.linalg.norm(world - centre, axis=1) <= 6).reshape(coarse_shape)
    s = evaluate(Volume(coarse.astype(np.float32), caff), ref)
    # every 1 mm voxel centre has exactly one nearest 2 mm voxel (the grids are offset by 0.5 mm), so
    # nearest-neighbour resampling is the 2 mm mask repeated twice along each axis: the exact answer
    expected = coarse.repeat(2, 0).repeat(2, 1).repeat(2, 2)
    assert s.dice == pytest.approx(dice(expected, ref_mask), abs=1e-12)
    assert s.pred_volume_ml == pytest.approx(coarse.sum() * 8 / 1000, abs=1e-12)
    assert s.lesion_f1 == 1.0


def test_find_lesions_volume_and_world_centroid():
    shape = (30, 30, 30)
    aff = make_affine((0.5, 0.5, 2.0), shape=shape)
    m = ball(shape, (10, 12, 15), 3)
    labels, lesions = find_lesions(Volume(m.astype(np.float32), aff))
    assert len(lesions) == 1
    les = lesions[0]
    assert les.voxels == int(m.sum())
    assert les.volume_ml == pytest.approx(m.sum() * 0.5 * 0.5 * 2.0 / 1000, rel=1e-3)
    expected = aff @ np.array([10, 12, 15, 1.0])
    assert (les.centroid_x, les.centroid_y, les.centroid_z) == pytest.approx(tuple(expected[:3]), abs=0.01)


def test_remove_small():
    m = np.zeros((20, 20, 20), bool)
    m[2, 2, 2] = True
    m[10:13, 10:13, 10:13] = True
    kept = remove_small(m, 5)
    assert kept.sum() == 27


def test_keep_confident_drops_lesions_without_a_sure_voxel():
    from mslesion.lesions import keep_confident

    prob = np.zeros((20, 20, 20), np.float32)
    prob[2:5, 2:5, 2:5] = 0.6          # an unsure lesion: every voxel 0.6
    prob[10:13, 10:13, 10:13] = 0.6    # a sure one: outlined at 0.5, one voxel at 0.95
    prob[11, 11, 11] = 0.95
    kept = keep_confident(prob >= 0.5, prob, 0.9)
    assert kept.sum() == 27 and kept[11, 11, 11] and not kept[3, 3, 3]
    assert keep_confident(prob >= 0.5, prob, 0.5).sum() == 54
    assert not keep_confident(np.zeros_like(prob, bool), prob, 0.9).any()


@pytest.mark.parametrize("threshold, min_voxels, min_peak", [(0.4, 3, 0.8), (0.5, 1, 0.0), (0.3, 20, 0.95)])
def test_binarize_matches_size_then_peak_filtering_with_scipy(threshold, min_voxels, min_peak):
    """binarize labels once; it must equal removing small lesions, then (scipy's per-label maximum)
    lesions without a voxel at min_peak."""
    from scipy import ndimage

    from mslesion.lesions import binarize, label_components

    rng = np.random.default_rng(3)
    spikes = np.zeros((40, 36, 30), np.float32)
    spikes[tuple(rng.integers(0, 30, size=(3, 40)))] = rng.uniform(0.3, 1.0, 40)  # blobs of random peaks
    kernel = ndimage.gaussian_filter(np.pad(np.ones((1, 1, 1), np.float32), 4), 1.5).max()
    prob = np.clip(ndimage.gaussian_filter(spikes, 1.5) / kernel, 0.0, 1.0)
    expected = remove_small(prob >= threshold, min_voxels)
    labels, n = label_components(expected)
    assert n > 5, "the random map must hold several lesions"
    if min_peak > threshold:
        peaks = np.asarray(ndimage.maximum(prob, labels, index=np.arange(1, n + 1)))
        expected = np.concatenate([[False], peaks >= min_peak])[labels]
    assert np.array_equal(binarize(prob, threshold, min_voxels, min_peak), expected)


def test_lesions_mostly_outside_the_brain_are_dropped_and_counted():
    """A lesion straddling the brain edge stays while half of it is inside; one in the scalp goes."""
    from mslesion.lesions import drop_outside

    brain = np.zeros((30, 30, 30), bool)
    brain[:, :15, :] = True
    mask = np.zeros_like(brain)
    mask[5:8, 5:8, 5:8] = True            # deep inside
    mask[20:22, 14:16, 20:22] = True      # half in, half out: kept
    mask[10:12, 14:17, 10:12] = True      # a third in: dropped
    mask[20:23, 25:28, 5:8] = True        # in the scalp: dropped
    kept, dropped = drop_outside(mask, brain)
    assert dropped == 2
    assert kept[5:8, 5:8, 5:8].all() and kept[20:22, 14:16, 20:22].all()
    assert not kept[10:12, 14:17, 10:12].any() and not kept[20:23, 25:28, 5:8].any()
    assert drop_outside(np.zeros_like(brain), brain)[1] == 0


@pytest.mark.realdata
def test_cohort_evaluation_of_isbi_inter_rater_agreement(shared_data, tmp_path):
    """Rater 2 scored against rater 1 on the three ISBI cases: the human level quoted in issue 4
    (Dice 0.58-0.86, lesion F1 0.57-0.87); swapping the raters swaps sensitivity and precision."""
    from mslesion.cohort_eval import evaluate_pairs, read_pairs

    isbi = shared_data / "brain_ms" / "isbi2015"
    rows = ["subject,pred,ref"] + [f"{c},{isbi / c / 'lesions_rater2.nii.gz'},{isbi / c / 'lesions_rater1.nii.gz'}"
                                   for c in ("training01", "training02", "training03")]
    (tmp_path / "pairs.csv").write_text("\n".join(rows) + "\n")
    forward = evaluate_pairs(read_pairs(tmp_path / "pairs.csv"))
    assert not forward.failures and len(forward.rows) == 3
    for row in forward.rows:
        assert 0.58 <= row["dice"] <= 0.87 and 0.55 <= row["lesion_f1"] <= 0.88
    # the two expert masks are fixed files: the README's human-level figures (Dice 0.767, lesion F1
    # 0.685) follow exactly, to the rounding of the summary
    summary = forward.summary()
    assert summary["mean_dice"] == pytest.approx(0.767, abs=5e-4)
    assert summary["mean_lesion_f1"] == pytest.approx(0.685, abs=5e-4)
    swapped = evaluate_pairs([{**p, "pred": p["ref"], "ref": p["pred"]} for p in read_pairs(tmp_path / "pairs.csv")])
    for a, b in zip(forward.rows, swapped.rows):
        assert a["dice"] == b["dice"]
        assert a["lesion_sensitivity"] == b["lesion_precision"] and a["lesion_precision"] == b["lesion_sensitivity"]


def test_min_lesion_size_drops_specks_from_both_masks():
    aff = make_affine((1.0, 1.0, 1.0))
    ref = np.zeros((30, 30, 30), bool)
    ref |= ball(ref.shape, (10, 10, 10), 3.0)
    ref[25, 25, 25] = True                     # a 1 mm^3 speck in the reference
    pred = ball(ref.shape, (10, 10, 10), 3.0)
    pred[2, 2, 2] = pred[2, 2, 3] = True       # a 2 mm^3 speck in the prediction
    all_lesions = evaluate(Volume(pred.astype(np.uint8), aff), Volume(ref.astype(np.uint8), aff))
    assert (all_lesions.ref_lesions, all_lesions.pred_lesions, all_lesions.lesion_f1) == (2, 2, 0.5)
    big = evaluate(Volume(pred.astype(np.uint8), aff), Volume(ref.astype(np.uint8), aff), min_lesion_mm3=3.0)
    assert (big.ref_lesions, big.pred_lesions, big.lesion_f1) == (1, 1, 1.0)


def test_sensitivity_by_lesion_size_class():
    """Reference lesions of 8, 64 and 216 mm^3 fall in the <30, 30-100 and >100 classes; only found ones count."""
    ref = np.zeros((40, 40, 40), bool)
    ref[2:4, 2:4, 2:4] = True        # 8 voxels of 1 mm^3: < 30
    ref[10:14, 10:14, 10:14] = True  # 64: 30-100
    ref[20:26, 20:26, 20:26] = True  # 216: > 100
    ref[30:32, 30:32, 30:32] = True  # 8: < 30, missed
    pred = np.zeros_like(ref)
    pred[3, 3, 3] = True             # touches the first small lesion
    pred[22:24, 22:24, 22:24] = True  # touches the big one
    s = score_arrays(pred, ref, voxel_ml=0.001)
    assert (s.ref_lesions_lt30, s.detected_lt30, s.sensitivity_lt30) == (2, 1, 0.5)
    assert (s.ref_lesions_30to100, s.detected_30to100, s.sensitivity_30to100) == (1, 0, 0.0)
    assert (s.ref_lesions_gt100, s.detected_gt100, s.sensitivity_gt100) == (1, 1, 1.0)
    empty = score_arrays(pred, np.zeros_like(ref), voxel_ml=0.001)
    assert empty.sensitivity_lt30 is None and empty.ref_lesions_lt30 == 0


def test_reliability_table_and_ece():
    """Voxels predicted 0.25 of which a quarter are lesion are calibrated; 0.95 with half lesion is not."""
    from mslesion.metrics import reliability

    prob = np.array([0.25] * 8 + [0.95] * 4)
    ref = np.array([1, 1, 0, 0, 0, 0, 0, 0] + [1, 1, 0, 0], bool)
    rows, ece = reliability(prob, ref, bins=10)
    assert rows[2]["voxels"] == 8 and rows[2]["lesion_fraction"] == pytest.approx(0.25)
    assert rows[9]["voxels"] == 4 and rows[9]["lesion_fraction"] == pytest.approx(0.5)
    assert ece == pytest.approx(4 / 12 * 0.45)
