"""Checks of an answer against a phantom's known truth, shared by the end-to-end tests."""
from __future__ import annotations

from mslesion.metrics import Scores, evaluate
from mslesion.volume import Volume

#: What the FLAIR-threshold baseline does on the default phantoms (2.5 x 2.5 x 3 mm, two painted
#: lesions, full preprocessing), measured for issue 20: Dice 0.979-0.996 over seeds 0 and 1, the
#: two-lesion layout of test_pipeline and the T1 + FLAIR CLI run; both lesions found and nothing else
#: (precision 1.0).  The floor leaves a margin of ~0.08 for noise and preprocessing changes; a
#: segmenter that marks the whole brain scores Dice < 0.01 and precision 0, a threshold of 0 the same.
PHANTOM_MIN_DICE = 0.9


def assert_finds_phantom_lesions(mask: Volume, truth: Volume, min_dice: float = PHANTOM_MIN_DICE) -> Scores:
    """Every painted lesion found, no other lesion, voxel overlap at least ``min_dice``."""
    scores = evaluate(mask, truth)
    assert scores.lesion_sensitivity == 1.0, scores
    assert scores.lesion_precision == 1.0, scores
    assert scores.dice >= min_dice, scores
    return scores
