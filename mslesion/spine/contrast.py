"""Which spinal contrast an image has: the user's argument, the file name, or the image itself."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

#: file-name tokens (BIDS suffixes and common names, lower case) -> spinal contrast
NAME_TOKENS = {
    "t2": "t2", "t2w": "t2", "t2ax": "t2", "t2sag": "t2",
    "t2s": "t2s", "t2star": "t2s", "t2starw": "t2s", "t2sw": "t2s", "gre": "t2s", "medic": "t2s", "merge": "t2s",
    "t1": "t1", "t1w": "t1",
    "stir": "stir",
    "psir": "psir",
}
#: tokens that name a contrast the spine analysis does not handle (the name then tells nothing)
OTHER_TOKENS = {"flair", "dwi", "pd", "pdw", "t1post", "t1gd", "ce", "swi", "bold", "dti", "mt", "mton", "mtoff"}


@dataclass(frozen=True)
class ContrastChoice:
    contrast: str
    source: str        # "argument", "file name" or "image"
    reason: str

    def as_report(self) -> dict:
        return {"contrast": self.contrast, "contrast_source": self.source, "contrast_reason": self.reason}


def contrast_from_name(path: str | Path | None) -> tuple[str | None, str]:
    """Spinal contrast named by the file name (e.g. ``sub-01_T2star.nii.gz`` -> t2s), and why.

    Returns ``(None, reason)`` when the name names no contrast, another one, or two different ones.
    """
    if path is None:
        return None, "the image has no file name"
    name = Path(str(path)).name
    stem = re.sub(r"\.(nii(\.gz)?|mgz|mha|nrrd)$", "", name, flags=re.IGNORECASE)
    tokens = [t for t in re.split(r"[_\-.\s]+", stem.lower()) if t]
    # BIDS: key-value entities (sub-01, acq-x) are not contrasts; the suffix is the last token
    found = {NAME_TOKENS[t] for t in tokens if t in NAME_TOKENS}
    other = [t for t in tokens if t in OTHER_TOKENS]
    if len(found) == 1 and not other:
        token = next(t for t in tokens if t in NAME_TOKENS)
        return next(iter(found)), f"file name {name!r} contains {token!r}"
    if len(found) > 1:
        return None, f"file name {name!r} names several contrasts ({', '.join(sorted(found))})"
    if other:
        return None, f"file name {name!r} names {other[0]!r}, not a spinal contrast mslesion handles"
    return None, f"file name {name!r} names no contrast"


#: a contrast read from the image must score this many times better than any other plausible one
IMAGE_MARGIN = 2.5


def cord_score(features: dict) -> float:
    """How clearly the traced cord looks like a cord in its CSF sleeve under one contrast (higher: clearer).

    CSF contrast x fraction of the border with the CSF sleeve / intensity spread inside the cord.
    """
    return float(features["csf_contrast"]) * float(features["sleeve"]) / max(float(features["inner_cv"]), 0.05)


def contrast_from_image(candidates: dict[str, dict], problems: dict[str, list[str]], path: object
                        ) -> tuple[str | None, str]:
    """Pick the contrast under which the image shows a plausible cord most clearly, or None and why.

    ``candidates`` maps each tried contrast to its cord features, ``problems`` to the reasons its cord
    is implausible (empty when plausible).
    """
    plausible = {c: cord_score(f) for c, f in candidates.items() if not problems[c]}
    scores = ", ".join(f"{c} {cord_score(f):.2f}" + ("" if not problems[c] else " (no cord)")
                       for c, f in candidates.items())
    if not plausible:
        return None, f"no contrast shows a plausible cord (scores {scores})"
    ranked = sorted(plausible.items(), key=lambda kv: -kv[1])
    best, best_score = ranked[0]
    if len(ranked) > 1 and best_score < IMAGE_MARGIN * ranked[1][1]:
        return None, (f"the image fits {best} and {ranked[1][0]} about as well (cord scores {scores}; "
                      f"{IMAGE_MARGIN:g}x needed)")
    side = "darker" if best in ("t2", "t2s", "stir") else "brighter"
    return best, f"cord {side} than the CSF around it; cord score {scores}"
