"""Enhancement and black-hole calls on a phantom with known enhancing and non-enhancing structures."""
from __future__ import annotations

import numpy as np
import pytest

from mslesion import enhancement as enh

SHAPE = (80, 80, 80)


def _ball(centre, radius):
    g = np.indices(SHAPE, dtype=np.float32)
    return np.sqrt(sum((gi - c) ** 2 for gi, c in zip(g, centre))) <= radius


@pytest.fixture(scope="module")
def phantom():
    rng = np.random.default_rng(0)
    brain = _ball((40, 40, 40), 34)
    csf = _ball((40, 40, 40), 6)                     # a central "ventricle"
    t1 = np.where(brain, 1.0, 0.0) + rng.normal(0, 0.05, SHAPE)
    t1[csf] = -1.0
    flair = rng.normal(0, 0.05, SHAPE)
    flair[csf] = -1.5
    lesion_enh = _ball((40, 22, 40), 4)              # enhancing lesion (nodular)
    lesion_non = _ball((40, 58, 40), 4)              # non-enhancing lesion, T1 as dark as CSF: a black hole
    for les in (lesion_enh, lesion_non):
        flair[les] = 2.0
    t1[lesion_non] = -1.0
    t1[lesion_enh] = 0.9
    post = 1.1 * t1 + 0.2 + rng.normal(0, 0.05, SHAPE)  # another gain and offset, same noise level
    post[_ball((40, 22, 40), 2.5)] += 1.0               # enhancement inside lesion_enh
    focus_centre = (22, 40, 40)
    post[_ball(focus_centre, 2.5)] += 1.0               # enhancing focus in white matter, no FLAIR lesion
    post[60:64, 22:24, 30:70] += 1.0                    # a 40 mm long, 2-4 mm thick "vessel"
    post[_ball((40, 40, 74), 2.5)] += 1.0               # at the brain surface: dura / sinus
    post[_ball((40, 40, 40), 2)] += 1.0                 # choroid plexus in the ventricle
    lesions = lesion_enh | lesion_non
    return dict(brain=brain, t1=t1.astype(np.float32), flair=flair.astype(np.float32), post=post.astype(np.float32),
                lesions=lesions, focus=np.array(focus_centre, float))


def _run(ph, rules=enh.EnhancementRules()):
    from scipy import ndimage

    refs = enh.reference_masks(ph["flair"], ph["t1"], ph["brain"], ph["lesions"])
    sub = enh.subtraction_z(ph["t1"], ph["post"], ph["brain"] & ~ph["lesions"])
    normal = enh.normal_enhancement(ph["brain"], refs.csf, (1.0, 1.0, 1.0), rules)
    labels, n = ndimage.label(ph["lesions"])
    ev = enh.assess_lesions(labels, n, sub, normal, ph["t1"], refs, 1.0, rules)
    foci = enh.enhancing_foci(sub, ph["brain"], ph["lesions"], normal, (1.0, 1.0, 1.0), rules)
    by_y = {int(np.argwhere(labels == e.lesion_id)[:, 1].mean()): e for e in ev}
    return refs, sub, ev, foci, by_y


def test_subtraction_matches_gain_and_offset(phantom):
    refs, sub, *_ = _run(phantom)
    # NAWM differs between the scans only by gain, offset and noise: after matching it is centred on 0, with a
    # robust SD of at most 1 (the misregistration term can only widen the expected error, never narrow it)
    z = sub[refs.nawm]
    assert abs(float(np.median(z))) < 0.1
    assert 0.4 < 1.4826 * float(np.median(np.abs(z - np.median(z)))) <= 1.05
    # without the misregistration term, the robust SD is 1
    plain = enh.subtraction_z(phantom["t1"], phantom["post"], phantom["brain"] & ~phantom["lesions"],
                              misregistration_mm=0.0)[refs.nawm]
    assert 0.9 < 1.4826 * float(np.median(np.abs(plain - np.median(plain)))) < 1.1


def test_enhancing_and_non_enhancing_lesions_and_black_hole(phantom):
    _, _, ev, _, by_y = _run(phantom)
    assert by_y[22].enhancing and by_y[22].enhancing_mm3 >= 8
    assert not by_y[58].enhancing
    assert by_y[58].t1_hypointense is True and by_y[58].t1_ratio < 0.2
    assert by_y[22].t1_hypointense is False and by_y[22].t1_ratio > 0.8
    dit = enh.dissemination_in_time(ev, assessed=True)
    assert dit["met"] is True and dit["enhancing_lesions"] == 1 and dit["non_enhancing_lesions"] == 1


def test_focus_outside_lesions_found_but_vessel_surface_and_plexus_are_not(phantom):
    _, _, _, foci, _ = _run(phantom)
    assert len(foci) == 1
    assert np.linalg.norm(np.array(foci[0].centroid_vox) - phantom["focus"]) < 1.5


def test_no_enhancement_gives_dit_not_met_and_no_post_gives_not_assessed(phantom):
    quiet = dict(phantom, post=1.1 * phantom["t1"] + 0.2)
    _, _, ev, foci, _ = _run(quiet)
    assert not any(e.enhancing for e in ev) and foci == []
    assert enh.dissemination_in_time(ev, assessed=True)["met"] is False
    missing = enh.dissemination_in_time([], assessed=False)
    assert missing["met"] is None and "not assessed" in missing["statement"]


def test_ring_on_the_lesion_edge_is_found_even_where_the_flair_edge_stops_short(phantom):
    """A ring-enhancing lesion: the enhancing rim is its edge, here 0-1.5 mm outside the FLAIR lesion mask."""
    centre = (40, 40, 20)
    g = np.indices(SHAPE, dtype=np.float32)
    dist = np.sqrt(sum((gi - c) ** 2 for gi, c in zip(g, centre)))
    ring_lesion = dist <= 5.0
    flair = phantom["flair"].copy()
    flair[ring_lesion] = 2.0
    post = phantom["post"].copy()
    post[(dist > 5.0) & (dist <= 6.5)] += 1.0
    ph = dict(phantom, flair=flair, post=post, lesions=phantom["lesions"] | ring_lesion)
    _, _, ev, foci, by_y = _run(ph)
    ring = by_y[40]
    assert ring.enhancing and ring.enhancing_mm3 >= 100
    assert len(foci) == 1                                # the rim is part of the lesion, not a focus of its own
    # without the rim the ring lies wholly outside the FLAIR lesion: the rule would miss it
    _, _, _, _, strict = _run(ph, enh.EnhancementRules(lesion_rim_mm=0.0))
    assert not strict[40].enhancing


def test_short_thick_vessel_in_white_matter_is_not_called_but_a_5mm_nodule_is(phantom):
    """A 10 mm long, 4 mm thick vessel segment (elongation ~2.5) is rejected; a 5 mm ball near it is not."""
    post = phantom["post"].copy()
    segment = (40, 40, 60)
    post[35:45, 38:42, 58:62] += 1.0
    nodule = (40, 40, 22)
    post[_ball(nodule, 2.5)] += 1.0
    _, _, _, foci, _ = _run(dict(phantom, post=post))
    centres = [np.array(f.centroid_vox) for f in foci]
    assert not any(np.linalg.norm(c - segment) < 4 for c in centres)
    assert any(np.linalg.norm(c - nodule) < 1.5 for c in centres)
    assert any(np.linalg.norm(c - phantom["focus"]) < 1.5 for c in centres)
    # with the session-14 elongation limit (3) the segment passed as a focus: the test sees the difference
    _, _, _, loose, _ = _run(dict(phantom, post=post), enh.EnhancementRules(vessel_elongation=3.0))
    assert any(np.linalg.norm(np.array(f.centroid_vox) - segment) < 4 for f in loose)


def test_enhancement_map_marks_the_enhancing_lesion_and_the_focus(phantom):
    from scipy import ndimage

    rules = enh.EnhancementRules()
    refs, sub, ev, foci, _ = _run(phantom)
    normal = enh.normal_enhancement(phantom["brain"], refs.csf, (1.0, 1.0, 1.0), rules)
    labels, _ = ndimage.label(phantom["lesions"])
    emap = enh.enhancement_map(labels, ev, sub, normal, foci, rules)
    lesion_part, focus_part = np.argwhere(emap == 1), np.argwhere(emap == 2)
    assert np.linalg.norm(lesion_part.mean(0) - (40, 22, 40)) < 1.5       # the enhancing lesion only
    assert np.linalg.norm(focus_part.mean(0) - phantom["focus"]) < 1.5
    assert not emap[_ball((40, 58, 40), 5)].any()                          # nothing at the non-enhancing lesion



def test_black_hole_core_of_a_large_lesion_counts_but_csf_partial_volume_does_not(phantom):
    """Volume rule: a 5 mm dark core in a 14 mm FLAIR lesion makes it T1-hypointense (its median T1 does not);
    a lesion beside the ventricle, dark only in the 2 mm next to the CSF (partial volume), is not a black hole."""
    import dataclasses

    from scipy import ndimage

    big, core = _ball((40, 40, 66), 7), _ball((40, 40, 66), 2.5)
    beside = _ball((40, 40, 51), 4) & ~_ball((40, 40, 40), 6)          # touches the 6 mm "ventricle"
    t1, flair = phantom["t1"].copy(), phantom["flair"].copy()
    t1[big | beside] = 0.8                                             # a little darker than NAWM (1.0)
    t1[core] = -0.8                                                    # nearly as dark as CSF (-1.0)
    t1[beside & _ball((40, 40, 40), 8)] = -0.5                         # partial volume with CSF
    flair[big | beside] = 2.0
    refs = enh.reference_masks(flair, t1, phantom["brain"], big | beside)
    labels = np.zeros(SHAPE, np.int32)
    labels[big], labels[beside] = 1, 2
    rules = dataclasses.replace(enh.EnhancementRules(), black_hole_min_mm3=20.0, black_hole_csf_margin_mm=3.0)
    by_id = {e.lesion_id: e for e in enh.assess_lesions(labels, 2, None, None, t1, refs, 1.0, rules)}
    assert by_id[1].t1_hypointense is True and by_id[1].t1_ratio > 0.7 and by_id[1].t1_hypointense_mm3 >= 40
    assert by_id[2].t1_hypointense is False
    median_rule = dataclasses.replace(rules, black_hole_min_mm3=0.0)
    by_id = {e.lesion_id: e for e in enh.assess_lesions(labels, 2, None, None, t1, refs, 1.0, median_rule)}
    assert by_id[1].t1_hypointense is False                            # the lesion's median misses the core
    assert ndimage.label(beside)[1] == 1


def test_focus_without_flair_signal_is_taken_as_a_vessel(phantom):
    """Given the FLAIR, enhancement where FLAIR is no brighter than normal white matter (a vein, the choroid
    plexus) is no focus; the same enhancement on a faint FLAIR hyperintensity is one."""
    from scipy import ndimage

    refs = enh.reference_masks(phantom["flair"], phantom["t1"], phantom["brain"], phantom["lesions"])
    sub = enh.subtraction_z(phantom["t1"], phantom["post"], phantom["brain"] & ~phantom["lesions"])
    rules = enh.EnhancementRules()
    normal = enh.normal_enhancement(phantom["brain"], refs.csf, (1.0, 1.0, 1.0), rules)

    def foci(flair, rules=rules):
        return enh.enhancing_foci(sub, phantom["brain"], phantom["lesions"], normal, (1.0, 1.0, 1.0), rules,
                                  phantom["t1"], refs, flair=flair, csf=refs.csf)

    assert ndimage.label(phantom["lesions"])[1] == 2
    assert foci(phantom["flair"]) == []
    assert len(foci(phantom["flair"], enh.EnhancementRules(focus_min_flair_pct=0))) == 1
    faint = phantom["flair"].copy()
    faint[_ball(phantom["focus"], 3)] += 0.3            # 6 SDs of this phantom's white-matter noise
    found = foci(faint)
    assert len(found) == 1 and np.linalg.norm(np.array(found[0].centroid_vox) - phantom["focus"]) < 1.5
    assert found[0].flair_z is not None and found[0].flair_z > refs.flair_level(75)


def test_scattered_noise_voxels_in_a_large_lesion_do_not_make_it_enhancing():
    """20 isolated voxels at z >= 3 in a 4,000-voxel lesion are noise; one 10-voxel cluster is enhancement."""
    labels = np.zeros(SHAPE, np.int32)
    labels[_ball((40, 40, 40), 10)] = 1
    rng = np.random.default_rng(1)
    sub = rng.normal(0, 0.5, SHAPE).astype(np.float32)
    inside = np.argwhere(labels == 1)
    lattice = inside[np.all(inside % 3 == 0, axis=1)]    # on a 3-voxel lattice: no two touch
    spots = lattice[rng.choice(len(lattice), 20, replace=False)]
    assert len(spots) == 20
    sub[tuple(spots.T)] = 4.0

    def enhancing(z, rules=enh.EnhancementRules()):
        return enh.assess_lesions(labels, 1, z, None, None, None, 1.0, rules)[0].enhancing

    assert not enhancing(sub)
    assert enhancing(sub, enh.EnhancementRules(lesion_connected=False))
    cluster = sub.copy()
    cluster[38:40, 40:45, 40] = 4.0
    assert enhancing(cluster)


def _check(ph, post):
    from mslesion.enhancement_checks import check_post_contrast

    rules = enh.EnhancementRules()
    refs = enh.reference_masks(ph["flair"], ph["t1"], ph["brain"], ph["lesions"])
    ref = ph["brain"] & ~ph["lesions"]
    sub = enh.subtraction_z(ph["t1"], post, ref)
    normal = enh.normal_enhancement(ph["brain"], refs.csf, (1.0, 1.0, 1.0), rules)
    return check_post_contrast(ph["t1"], post, sub, ref, normal, ph["brain"], rules)


def _with_sinus_and_veins(ph, post):
    """Normal enhancement as on every real post-contrast scan: the upper brain surface (sinus, cortical veins)."""
    from scipy import ndimage

    depth = ndimage.distance_transform_edt(ph["brain"])
    out = post.copy()
    out[ph["brain"] & (depth <= 3) & (np.indices(SHAPE)[2] > 40)] += 1.0
    return out


def test_post_contrast_check_accepts_a_post_scan_and_refuses_a_pre_scan_or_another_subject(phantom):
    """Issue 17's bad input: a pre-contrast T1 given as post (no normal enhancement) or another subject's
    post-contrast T1 (anatomy does not match) are refused with the reason, never read as "no enhancement"."""
    from scipy import ndimage

    rng = np.random.default_rng(1)
    # anatomy: smooth tissue variation that both scans of one head share (the phantom's brain is flat + noise)
    anatomy = ndimage.gaussian_filter(rng.normal(size=SHAPE), 4).astype(np.float32)
    anatomy *= 0.2 / anatomy[phantom["brain"]].std()
    phantom = {**phantom, "t1": phantom["t1"] + anatomy}
    good = _with_sinus_and_veins(phantom, phantom["post"] + 1.1 * anatomy)
    ok = _check(phantom, good)
    assert ok.usable, ok.problems
    assert ok.rank_correlation > 0.6 and ok.normal_enhancement_fraction > 0.005

    pre_as_post = 1.1 * phantom["t1"] + 0.2 + rng.normal(0, 0.05, SHAPE).astype(np.float32)
    pre = _check(phantom, pre_as_post)
    assert not pre.usable and len(pre.problems) == 1 and "pre-contrast scan" in pre.problems[0]

    foreign = np.roll(good, (9, -7, 5), axis=(0, 1, 2))   # the right kind of scan, of another head
    other = _check(phantom, foreign)
    assert not other.usable and any("anatomy" in p for p in other.problems), other.problems


def test_rank_correlation_is_spearman():
    from scipy.stats import spearmanr

    from mslesion.enhancement_checks import rank_correlation

    rng = np.random.default_rng(2)
    a = rng.normal(size=(20, 20, 20))
    b = np.exp(a) + rng.normal(0, 0.5, a.shape)
    where = rng.random(a.shape) > 0.3
    assert rank_correlation(a, b, where) == pytest.approx(spearmanr(a[where], b[where]).correlation, abs=1e-9)
    assert np.isnan(rank_correlation(a, b, np.zeros_like(where)))


@pytest.mark.parametrize("dis_met, dit, met", [
    (True, {"assessed": True, "met": True}, True),
    (True, {"assessed": True, "met": False}, False),
    (False, {"assessed": True, "met": True}, False),
    (True, {"assessed": False, "met": None, "reason": "no post-contrast T1 given (--t1post)"}, None),
    (False, {"assessed": False, "met": None}, False),
    (None, {"assessed": True, "met": True}, None),
])
def test_mri_dissemination_combines_space_and_time_and_never_says_no_for_what_was_not_assessed(dis_met, dit, met):
    from mslesion.report import DisVerdict, MriDissemination, SingleVisitDit

    dis = None if dis_met is None else DisVerdict(met=dis_met, areas_involved=["periventricular", "infratentorial"]
                                                  if dis_met else ["periventricular"])
    out = MriDissemination.of(dis, SingleVisitDit.from_dict(dit))
    assert out.met is met
    assert out.dissemination_in_space is dis_met
    assert "not a diagnosis" in out.statement
    if dit["assessed"] is False:
        assert out.dissemination_in_time is None and "dissemination in time not assessed" in out.statement
        assert "not shown" not in out.statement
    if dis_met and met is not True:
        assert "mslesion compare" in out.statement
    if met is True:
        assert out.statement.startswith("MRI shows dissemination in space and in time")
