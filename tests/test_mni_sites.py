"""Benchmark sites placed without a template fit: MNI anchors and atlas draws on MNI-space scans."""
from __future__ import annotations

import numpy as np
import pytest

from mslesion.errors import InputError
from mslesion.location import atlas
from mslesion.location.mni_sites import (
    ATLAS_SITE_COUNTS,
    MNI152_1MM_AFFINE,
    MNI152_1MM_SHAPE,
    atlas_sites,
    mni_anchor_sites,
    require_mni_space,
)
from mslesion.location.synthetic import MNI_SITES
from mslesion.volume import Volume


def test_mni_grid_required():
    require_mni_space(Volume(np.zeros(MNI152_1MM_SHAPE, np.float32), MNI152_1MM_AFFINE))
    shifted = MNI152_1MM_AFFINE.copy()
    shifted[0, 3] += 5.0
    with pytest.raises(InputError, match="MNI152"):
        require_mni_space(Volume(np.zeros(MNI152_1MM_SHAPE, np.float32), shifted))
    with pytest.raises(InputError, match="MNI152"):
        require_mni_space(Volume(np.zeros((64, 64, 48), np.float32), np.eye(4)))


def test_mni_anchor_sites_are_the_mni_anchors_unchanged():
    sites = mni_anchor_sites()
    assert [(s.kind, s.anchor, s.direction) for s in sites] == [(s.kind, s.anchor, s.direction) for s in MNI_SITES]


def _atlas_label_at(points) -> list[int]:
    labels, aff, _, _ = atlas.load_atlas()
    inv = np.linalg.inv(aff)
    return [int(labels[tuple(np.rint(inv @ np.array([*p, 1.0]))[:3].astype(int))]) for p in points]


@pytest.mark.slow
@pytest.mark.realdata
def test_atlas_sites_lie_in_their_structures(shared_data):
    from mslesion.io import load_volume

    flair = load_volume(shared_data / "brain_ms" / "ljubljana" / "patient07" / "flair.nii.gz")
    sites = atlas_sites(flair, seed=0)
    kinds = [s.kind for s in sites]
    assert {k: kinds.count(k) for k in ATLAS_SITE_COUNTS} == ATLAS_SITE_COUNTS
    want = {"pons": atlas.BRAINSTEM, "cerebellum": atlas.CEREBELLUM, "cso": atlas.WM, "ventricle": atlas.VENTRICLE,
            "juxtacortical": atlas.WM}
    assert _atlas_label_at([s.anchor for s in sites]) == [want[k] for k in kinds]
    for s in sites:
        if s.kind in ("ventricle", "juxtacortical"):
            assert np.linalg.norm(s.direction) == pytest.approx(1.0)
        if s.kind == "pons":
            assert -38 <= s.anchor[2] <= -18
    # another seed, another draw
    assert [s.anchor for s in atlas_sites(flair, seed=1)] != [s.anchor for s in sites]
    isbi = load_volume(shared_data / "brain_ms" / "isbi2015" / "training01" / "flair.nii.gz")
    with pytest.raises(InputError, match="MNI152"):
        atlas_sites(isbi)
