"""Benchmark the lesion-location step: accuracy on synthetic lesions at known sites, and run time.

    OMP_NUM_THREADS=2 .venv/bin/python scripts/bench_location.py [--cases ...] [--png DIR] [--seeds 0 1]
        [--sources template-fit mni-anchors atlas]

Three sources of sites, each reported separately:

* ``template-fit``: the sites of ``mslesion.location.synthetic.SHARED_DATA_SITES`` on the shared
  real scans (Ljubljana MNI-space FLAIRs, raw ISBI FLAIRs), proposed through an affine template fit
  (the same kind of fit the method makes) and checked by eye;
* ``mni-anchors``: the MNI anchors of ``MNI_SITES`` used as they are, on the scans distributed in
  MNI space (Ljubljana, MSLesSeg), where world coordinates are MNI coordinates: no fit involved;
* ``atlas``: random sites drawn from the atlas labels in MNI space on the same MNI-space scans
  (``mslesion.location.mni_sites.atlas_sites``), a different draw per seed.

Each site gets one synthetic lesion (burnt into the FLAIR); the scan is preprocessed and
:func:`mslesion.location.locate` labels the lesions.  Prints per-case and per-site accuracy and
the time of the location step.  ``--png`` writes, per case, a crop around every placed lesion
coloured by the region it was given, to check the sites by eye.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mslesion.io import load_volume  # noqa: E402
from mslesion.location import LocationOptions, locate  # noqa: E402
from mslesion.location.mni_sites import atlas_sites, mni_anchor_sites  # noqa: E402
from mslesion.location.synthetic import EXPECTED_REGION, SHARED_DATA_SITES, lesion_list, place_lesions  # noqa: E402
from mslesion.preprocess import preprocess  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "brain_ms"
COLOURS = {"periventricular": "orange", "juxtacortical": "deepskyblue", "infratentorial": "lime",
           "deep_white_matter": "yellow", "unclassified": "red"}


#: scans distributed in MNI152 space (182 x 218 x 182, 1 mm): world coordinates are MNI coordinates
MNI_SPACE_CASES = ("ljubljana/patient07", "ljubljana/patient26", "mslesseg/P14_T1", "mslesseg/P18_T1",
                   "mslesseg/P39_T1")
SOURCES = ("template-fit", "mni-anchors", "atlas")


def sites_for(source: str, case: str, flair, seed: int) -> list:
    if source == "template-fit":
        return SHARED_DATA_SITES[case]
    if source == "mni-anchors":
        return mni_anchor_sites()
    return atlas_sites(flair, seed=seed)


def run_case(case: str, seed: int, options: LocationOptions, png_dir: Path | None,
             source: str = "template-fit") -> tuple[list, float]:
    flair = load_volume(DATA / case / "flair.nii.gz", role="FLAIR")
    sites = sites_for(source, case, flair, seed)
    burnt, labels, placed_kinds = place_lesions(flair, sites, seed=seed)
    expected = [EXPECTED_REGION[k] for k in placed_kinds]
    pre = preprocess({"flair": burnt})
    lesions = lesion_list(labels)
    t0 = time.perf_counter()
    locate(labels.data, lesions, pre, options)
    elapsed = time.perf_counter() - t0
    rows = [(case, seed, k, exp, les.region, les.extra.get("structure", ""), source) for k, exp, les in
            zip(placed_kinds, expected, lesions)]
    if png_dir is not None:
        save_png(burnt, labels, lesions, expected,
                 png_dir / f"sites_{source}_{case.replace('/', '_')}_s{seed}.png")
    if len(placed_kinds) != len(sites):
        print(f"    {case}: {len(placed_kinds)} of {len(sites)} sites placed")
    return rows, elapsed


def save_png(flair, labels, lesions, expected, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy import ndimage

    n = len(lesions)
    cols = 6
    fig, axes = plt.subplots((n + cols - 1) // cols, cols, figsize=(3 * cols, 3.2 * ((n + cols - 1) // cols)))
    vmax = float(np.percentile(flair.data, 99.5))
    for ax, les, exp in zip(axes.ravel(), lesions, expected):
        c = ndimage.center_of_mass(labels.data == les.id)
        i, j, k = (int(round(v)) for v in c)
        r = int(round(30 / min(flair.zooms[:2])))
        sl = (slice(max(0, i - r), i + r), slice(max(0, j - r), j + r), k)
        ax.imshow(flair.data[sl].T, origin="lower", cmap="gray", vmax=vmax)
        ax.contour((labels.data[sl] == les.id).T, [0.5], colors=COLOURS.get(les.region, "red"), linewidths=1.2)
        ok = "OK" if les.region == exp else "WRONG"
        ax.set_title(f"#{les.id} want {exp[:12]}\ngot {les.region[:12]} {ok}", fontsize=8)
    for ax in axes.ravel():
        ax.axis("off")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=60)
    plt.close(fig)


EXPERT_CASES = {
    "ljubljana/patient07": ("lesions.nii.gz", "t1.nii.gz"), "ljubljana/patient26": ("lesions.nii.gz", "t1.nii.gz"),
    "isbi2015/training01": ("lesions_rater1.nii.gz", None), "isbi2015/training02": ("lesions_rater1.nii.gz", None),
    "isbi2015/training03": ("lesions_rater1.nii.gz", None),
}


def report_experts(out_root: Path) -> None:
    """`mslesion report` on the expert masks of the shared cases; prints regions, DIS and the step times."""
    import json

    from mslesion.cli import main as cli

    for case, (mask, t1) in EXPERT_CASES.items():
        out = out_root / case.replace("/", "_")
        argv = ["report", "--flair", str(DATA / case / "flair.nii.gz"), "--lesions", str(DATA / case / mask),
                "--out", str(out)] + (["--t1", str(DATA / case / t1)] if t1 else [])
        t0 = time.perf_counter()
        rc = cli(argv)
        wall = time.perf_counter() - t0
        rep = json.loads((out / "report.json").read_text())
        regions = {k: v["count"] for k, v in rep["regions"].items()}
        dis = rep["mcdonald_dis"]
        print(f"{case:22s} rc={rc} lesions={rep['lesion_count']:3d} {regions} DIS met={dis['met']} "
              f"areas={dis['areas_involved']} location {rep['timings_s']['location_s']:.1f} s, "
              f"command {wall:.1f} s -> {out}/qc/axial.png", flush=True)


def fit_error(cases: list[str]) -> None:
    """On MNI-space scans the atlas fit should be near the identity: print how far it maps MNI points.

    For each MNI anchor of ``MNI_SITES`` (world = MNI on these scans), the distance between the point
    and where the fitted transform sends it (``TemplateFit.to_mni``) is the fit's error there.
    """
    from mslesion.location import atlas
    from mslesion.location.mni_sites import require_mni_space
    from mslesion.location.synthetic import MNI_SITES

    pts = np.array([s.anchor for s in MNI_SITES], float)
    for case in cases:
        flair = load_volume(DATA / case / "flair.nii.gz", role="FLAIR")
        require_mni_space(flair)
        pre = preprocess({"flair": flair})
        fit = atlas.fit_template(pre.flair, pre.brain_mask.data > 0)
        err = np.linalg.norm(fit.to_mni(pts) - pts, axis=1)
        shift = np.mean(fit.to_mni(pts) - pts, axis=0)
        print(f"[fit-error] {case:22s} |to_mni(p) - p| over {len(pts)} MNI anchors: mean {err.mean():.1f} mm, "
              f"max {err.max():.1f} mm, mean shift (x, y, z) {np.round(shift, 1).tolist()} mm", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", nargs="*", default=None,
                    help="default: the template-fit cases, and the MNI-space cases for the other sources")
    ap.add_argument("--sources", nargs="*", choices=SOURCES, default=list(SOURCES))
    ap.add_argument("--seeds", nargs="*", type=int, default=[0])
    ap.add_argument("--png", type=Path, default=None)
    ap.add_argument("--fit-error", action="store_true",
                    help="instead: how far the atlas fit is from the identity on the MNI-space scans")
    ap.add_argument("--expert", type=Path, default=None, metavar="DIR",
                    help="instead: run `mslesion report` on the expert masks, outputs under DIR")
    args = ap.parse_args()
    if args.expert is not None:
        report_experts(args.expert)
        return 0
    if args.fit_error:
        fit_error(args.cases or list(MNI_SPACE_CASES))
        return 0
    logging.basicConfig(level=logging.WARNING)
    options = LocationOptions()
    rows, times = [], []
    for source in args.sources:
        default = list(SHARED_DATA_SITES) if source == "template-fit" else list(MNI_SPACE_CASES)
        cases = [c for c in (args.cases or default) if source != "template-fit" or c in SHARED_DATA_SITES]
        for case in cases:
            if source != "template-fit" and case not in MNI_SPACE_CASES:
                print(f"{source}: skipping {case} (not in MNI space; MNI sites cannot be placed on it)")
                continue
            for seed in args.seeds:
                r, t = run_case(case, seed, options, args.png, source)
                rows += r
                times.append(t)
                acc = np.mean([x[3] == x[4] for x in r])
                print(f"[{source}] {case:22s} seed {seed}: {len(r):3d} lesions, correct {acc:6.1%}, "
                      f"location step {t:5.1f} s", flush=True)
                for x in r:
                    if x[3] != x[4]:
                        print(f"    WRONG site={x[2]:13s} want={x[3]:17s} got={x[4]:17s} structure={x[5]}")
    for source in [s for s in SOURCES if s in args.sources]:
        sel = [x for x in rows if x[6] == source]
        correct = sum(x[3] == x[4] for x in sel)
        print(f"\n{source}: {correct}/{len(sel)} correct = {correct / max(len(sel), 1):.1%}")
        by_kind = Counter(x[2] for x in sel)
        for kind in EXPECTED_REGION:
            ok = sum(1 for x in sel if x[2] == kind and x[3] == x[4])
            print(f"  {kind:13s} {ok:3d}/{by_kind.get(kind, 0):3d}")
    total = len(rows)
    correct = sum(x[3] == x[4] for x in rows)
    print(f"\nALL sources: {correct}/{total} correct = {correct / max(total, 1):.1%}")
    print(f"location step: mean {np.mean(times):.1f} s, max {np.max(times):.1f} s per subject "
          f"(threads={os.environ.get('OMP_NUM_THREADS', 'unset')}, CPUs={os.cpu_count()})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
