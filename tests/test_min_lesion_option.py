"""Issue 16, item 5: analyze, batch and compare take --min-lesion-mm3, passed through the one pipeline."""
from __future__ import annotations

import numpy as np
import pytest

from mslesion.cli import get_parser
from mslesion.cli.analyze import options_from_args
from mslesion.longitudinal.change import ChangeComponent, ChangeMaps
from mslesion.longitudinal.compare import drop_small_changes
from mslesion.pipeline import AnalyzeOptions


@pytest.mark.parametrize("argv", [
    ["analyze", "--flair", "f.nii.gz", "--out", "o"],
    ["batch", "bids", "--out", "o"],
    ["compare", "--baseline-flair", "a.nii.gz", "--followup-flair", "b.nii.gz", "--out", "o"],
])
def test_min_lesion_mm3_reaches_the_analysis_options(argv):
    parser = get_parser()
    assert options_from_args(parser.parse_args(argv)).min_lesion_mm3 == AnalyzeOptions().min_lesion_mm3
    assert options_from_args(parser.parse_args(argv + ["--min-lesion-mm3", "12.5"])).min_lesion_mm3 == 12.5
    with pytest.raises(Exception):
        parser.parse_args(argv + ["--min-lesion-mm3", "-1"])


def test_compare_drops_changes_of_lesions_below_the_minimum():
    comps = np.zeros((10, 10, 10), np.int32)
    comps[1:4, 1:4, 1:4] = 1  # a new lesion of 27 voxels
    comps[6, 6, 6] = 2        # a new speck of 1 voxel
    kinds = (comps > 0).astype(np.uint8)
    table = [ChangeComponent(1, "new", 27, 27.0, 0.0, 27.0, 5.0, 4.0),
             ChangeComponent(2, "new", 1, 1.0, 0.0, 1.0, 5.0, 5.0)]
    changes = ChangeMaps(kinds, comps, table, 0.1)
    kept = drop_small_changes(changes, 3.0)
    assert [c.label for c in kept.table] == [1] and kept.count("new") == 1
    assert kept.components[6, 6, 6] == 0 and kept.kinds[6, 6, 6] == 0 and kept.components[2, 2, 2] == 1
    assert drop_small_changes(changes, 0.0) is changes
