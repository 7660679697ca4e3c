"""Find the cord and settle the contrast: from the argument, the file name, or the image itself."""
from __future__ import annotations

import logging
from pathlib import Path

from ..errors import InputError
from ..volume import Volume
from .contrast import ContrastChoice, contrast_from_image, contrast_from_name
from .cord import CONTRASTS, CordOptions, CordResult, check_contrast, segment_cord
from .plausibility import CordCriteria, NoCordError, cord_features, cord_problems

log = logging.getLogger(__name__)

#: contrasts tried when only the image can tell (STIR and PSIR trace the cord as T2 and T1 do)
IMAGE_CANDIDATES = ("t2", "t2s", "t1")


def find_cord(work: Volume, path: str | Path | None, contrast: str | None, opts: CordOptions | None = None,
              criteria: CordCriteria | None = None) -> tuple[ContrastChoice, CordResult, dict]:
    """Segment the cord of ``work`` and check that it is a cord; returns (contrast choice, cord, features).

    Raises :class:`NoCordError` when the image holds no plausible cord, and :class:`InputError`
    when ``contrast`` is None and neither the file name nor the image tells the contrast.
    """
    if contrast is not None:
        check_contrast(contrast, path)
        choice = ContrastChoice(contrast, "argument", "given by the user")
    else:
        named, why = contrast_from_name(path)
        if not named:
            return _from_image(work, path, why, opts, criteria)
        choice = ContrastChoice(named, "file name", why)
    cord = segment_cord(work, choice.contrast, opts)
    features = cord_features(work, cord, choice.contrast)
    problems = cord_problems(features, criteria)
    log.info("cord features (%s): %s", choice.contrast, features)
    if problems:
        hint = "" if choice.source == "argument" else f" (contrast {choice.contrast} from the {choice.source}; " \
                                                       f"pass --contrast if that is wrong)"
        raise NoCordError(path, f"with contrast {choice.contrast}: " + "; ".join(problems) + hint)
    return choice, cord, features


def _from_image(work: Volume, path: str | Path | None, name_reason: str, opts: CordOptions | None,
                criteria: CordCriteria | None) -> tuple[ContrastChoice, CordResult, dict]:
    cords, feats, problems = {}, {}, {}
    for c in IMAGE_CANDIDATES:
        cords[c] = segment_cord(work, c, opts)
        feats[c] = cord_features(work, cords[c], c)
        problems[c] = cord_problems(feats[c], criteria)
        log.info("cord features (%s): %s", c, feats[c])
    best, why = contrast_from_image(feats, problems, path)
    if best is None:
        if not any(not p for p in problems.values()):
            raise NoCordError(path, "; ".join(f"as {c}: {', '.join(p)}" for c, p in problems.items()))
        raise InputError(path, f"cannot tell the spinal contrast: {name_reason}, and {why}; "
                               f"pass --contrast ({'/'.join(CONTRASTS)})")
    log.warning("%s: contrast %s read from the image (%s)", path, best, why)
    return ContrastChoice(best, "image", f"{name_reason}; {why}"), cords[best], feats[best]
