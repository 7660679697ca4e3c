"""The enhancement stage of one analysis: gadolinium enhancement, T1 black holes, single-visit DIT.

Runs :mod:`mslesion.enhancement` on the preprocessed images (working grid) for the lesions found
on the native FLAIR grid, and writes the per-lesion evidence into each :class:`~mslesion.lesions.Lesion`
(``extra``: the ``lesions.csv`` columns) and a report section.
"""
from __future__ import annotations

import logging

import numpy as np

from . import enhancement as enh
from .enhancement_checks import check_post_contrast
from .lesions import Lesion
from .preprocess import Preprocessed
from .preprocess.registration import WORLD_OFFSET_NOTE_MM
from .preprocess.resample import resample_like
from .report import EnhancementSection, EnhancingFocusRow, ReferenceT1
from .volume import Volume, bounding_box

log = logging.getLogger(__name__)

#: the lesions.csv columns this stage adds (empty where not assessed)
LESION_COLUMNS = ("enhancing", "enhancing_mm3", "enhancement_z_p95", "t1_hypointense", "t1_ratio", "t1_hypointense_mm3")


def assess_subject(pre: Preprocessed, labels: np.ndarray, lesions: list[Lesion],
                   rules: enh.EnhancementRules | None = None) -> tuple[EnhancementSection, Volume | None]:
    """Enhancement (needs 't1' and 't1post' in ``pre.images``) and black holes (needs 't1').

    ``labels`` are the lesion labels on the native FLAIR grid (ids as in ``lesions``). Returns the
    report section; a lesion too small to survive the move to the 1 mm working grid is marked
    not assessed (empty fields).
    """
    rules = rules or enh.EnhancementRules()
    has_t1, has_post = "t1" in pre.images, "t1post" in pre.images
    section = EnhancementSection(rules=rules.as_dict(), t1_hypointensity_assessed=has_t1,
                                 enhancement_assessed=has_t1 and has_post)
    for les in lesions:
        les.extra.update({c: "" for c in LESION_COLUMNS})
    if not has_t1:
        reason = "no T1 given" if not has_post else "a post-contrast T1 needs the pre-contrast T1 (--t1) too"
        section.dissemination_in_time = enh.dissemination_in_time([], assessed=False, reason=reason)
        return section, None
    work_full = resample_like(pre.native.with_data(labels).as_labels(), pre.flair).data.astype(np.int32)
    # everything below runs in the bounding box of the brain and the lesions (with a margin, so that erosions,
    # gradients and distance transforms are as on the whole grid): about half the working grid, half the time
    inside = (pre.brain_mask.data > 0) | (work_full > 0)
    crop = bounding_box(inside, margin=8) if inside.any() else tuple(slice(0, n) for n in inside.shape)
    origin = np.array([s.start for s in crop], float)
    work = work_full[crop]
    brain = pre.brain_mask.data[crop] > 0
    flair, t1 = pre.images["flair"].data[crop], pre.images["t1"].data[crop]
    refs = enh.reference_masks(flair, t1, brain, work > 0)
    zooms = tuple(float(z) for z in pre.flair.zooms)
    sub = normal = None
    not_assessed = None if has_post else "no post-contrast T1 given (--t1post)"
    if has_post:
        post = pre.images["t1post"].data[crop]
        sub = enh.subtraction_z(t1, post, brain & (work == 0), zooms=zooms)
        normal = enh.normal_enhancement(brain, refs.csf, zooms, rules)
        check = check_post_contrast(t1, post, sub, brain & (work == 0), normal, brain, rules)
        check.notes.extend(_world_offset_notes(pre))
        section.post_contrast_check = check
        if not check.usable:  # enhancement not assessed: never a "no" from an unusable scan
            has_post, sub, normal = False, None, None
            section.enhancement_assessed = False
            not_assessed = "the post-contrast T1 failed its checks: " + "; ".join(check.problems)
    evidence = enh.assess_lesions(work, int(labels.max()), sub, normal, t1, refs, float(np.prod(zooms)), rules,
                                  zooms=zooms)
    by_id = {e.lesion_id: e for e in evidence}
    for les in lesions:
        e = by_id.get(les.id)
        if e is None:
            continue
        les.extra.update({"t1_hypointense": _yes_no(e.t1_hypointense), "t1_ratio": e.t1_ratio,
                          "t1_hypointense_mm3": "" if e.t1_hypointense_mm3 is None else e.t1_hypointense_mm3})
        if has_post:
            les.extra.update({"enhancing": _yes_no(e.enhancing), "enhancing_mm3": e.enhancing_mm3,
                              "enhancement_z_p95": e.enhancement_z_p95})
    assessed = [by_id[les.id] for les in lesions if les.id in by_id]
    section.black_holes = sum(bool(e.t1_hypointense) for e in assessed)
    section.reference_t1 = ReferenceT1(nawm=round(refs.t1_nawm, 3), csf=round(refs.t1_csf, 3))
    foci: list[enh.EnhancingFocus] = []
    if sub is not None and normal is not None:  # has_post
        foci = enh.enhancing_foci(sub, brain, work > 0, normal, zooms, rules, t1, refs, flair=flair, csf=refs.csf)
        for f in foci:                                   # back to working-grid voxels
            f.centroid_vox = tuple(float(c) for c in np.asarray(f.centroid_vox) + origin)  # type: ignore[assignment]
            if f.voxels is not None:
                f.voxels = f.voxels + origin.astype(int)
        section.enhancing_lesions = sum(e.enhancing for e in assessed)
        section.non_enhancing_lesions = sum(not e.enhancing for e in assessed)
        section.enhancing_foci_outside_lesions = [_focus_row(f, pre) for f in foci]
    section.dissemination_in_time = enh.dissemination_in_time(assessed, assessed=has_post, reason=not_assessed)
    emap = None
    if sub is not None and normal is not None:  # has_post
        work_map = np.zeros(work_full.shape, np.uint8)
        work_map[crop] = enh.enhancement_map(work, evidence, sub, normal,
                                             [_shifted(f, -origin) for f in foci], rules, zooms)
        emap = pre.to_native(pre.flair.with_data(work_map.astype(np.float32)), order=0)
        emap = emap.with_data(np.rint(emap.data).astype(np.uint8))
    log.info("enhancement: %s", {k: v for k, v in section.to_dict().items() if k != "rules"})
    return section, emap


def _world_offset_notes(pre: Preprocessed) -> list[str]:
    """What preprocessing noted of the post-contrast T1's place in world space (see ``world_offset_mm``)."""
    offset = pre.images["t1post"].meta.get("world_offset_mm")
    if offset is None or float(np.linalg.norm(offset)) <= WORLD_OFFSET_NOTE_MM:
        return []
    return [f"the post-contrast T1's head lay {float(np.linalg.norm(offset)):.0f} mm from the FLAIR's in world "
            "space; the registration started from the head centres (check the QC pictures)"]


def _shifted(focus: enh.EnhancingFocus, offset: np.ndarray) -> enh.EnhancingFocus:
    """A copy of ``focus`` with its voxels moved by ``offset`` (for the map, which is drawn in the crop)."""
    from dataclasses import replace

    voxels = None if focus.voxels is None else focus.voxels + offset.astype(int)
    return replace(focus, voxels=voxels)


def _yes_no(value: bool | None) -> str:
    return "" if value is None else ("yes" if value else "no")


def _focus_row(focus: enh.EnhancingFocus, pre: Preprocessed) -> EnhancingFocusRow:
    """A focus with its centroid in world (RAS) millimetres."""
    world = pre.flair.affine @ np.array([*focus.centroid_vox, 1.0])
    return EnhancingFocusRow(centroid_mm=[round(float(c), 1) for c in world[:3]], volume_mm3=focus.volume_mm3,
                             z_max=focus.z_max, elongation=focus.elongation, flair_z=focus.flair_z)
