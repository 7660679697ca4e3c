#!/usr/bin/env python
"""Tissue-model variants (issue 18) on the cases ``bench_volumes --keep-prepared`` cached.

    PYTHONPATH=. nice -n 10 python scripts/volumes_variants.py [--cases a,b] [--flair-only] [--pair]

Re-runs only the tissue stage (seconds a case) on the cached preprocessing and lesions of
``.devdata/volumes_bench/<case>[_flair]/prepared.pkl`` for each variant in :data:`VARIANTS`
(partial-volume classes, their prior weight) and prints the volumes against SAMSEG's
(samseg.stats and seg.mgz where ``scripts/samseg_reference.sh`` finished the case) and, with
``--pair``, patient12's BPF difference between visits: each visit alone (own brain mask) and with
one brain mask for both visits (as ``compare``), there with one mixture per visit and with one joint
mixture for both.
"""
from __future__ import annotations

import argparse
import pickle
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mslesion.volumes.stage import TissueModel, assess_volumes, assess_volumes_jointly  # noqa: E402
from scripts.bench_volumes import CACHE, cache_dir, compare_with_samseg  # noqa: E402

VARIANTS = {
    "3 classes": TissueModel(),
    "pv csf/gm": TissueModel(pairs=((0, 1),)),
    "pv csf/gm w0.5": TissueModel(pairs=((0, 1),), pv_weight=0.5),
    "pv csf/gm w2": TissueModel(pairs=((0, 1),), pv_weight=2.0),
    "pv csf/gm+csf/wm": TissueModel(pairs=((0, 1), (0, 2))),
    "pv csf/gm+gm/wm": TissueModel(pairs=((0, 1), (1, 2))),
    "pv all three": TissueModel(pairs=((0, 1), (0, 2), (1, 2))),
    "floor .02": TissueModel(prior_floor=0.02),
    "power 2": TissueModel(prior_power=2.0),
    "pv csf/gm floor .02": TissueModel(pairs=((0, 1),), prior_floor=0.02),
    "pv csf/gm power 2": TissueModel(pairs=((0, 1),), prior_power=2.0),
    "no smoothing": TissueModel(smooth_vox=0.0),
    "power .5": TissueModel(prior_power=0.5),
    "floor .3": TissueModel(prior_floor=0.3),
    "pv csf/gm power .5": TissueModel(pairs=((0, 1),), prior_power=0.5),
    "pv csf/gm+gm/wm power .5": TissueModel(pairs=((0, 1), (1, 2)), prior_power=0.5),
    "pv all power .5": TissueModel(pairs=((0, 1), (0, 2), (1, 2)), prior_power=0.5),
    "pv csf/gm power .3": TissueModel(pairs=((0, 1),), prior_power=0.3),
    "pv csf/gm power .7": TissueModel(pairs=((0, 1),), prior_power=0.7),
    "pv csf/gm w2 power .5": TissueModel(pairs=((0, 1),), pv_weight=2.0, prior_power=0.5),
    "pv csf/gm w.5 power .5": TissueModel(pairs=((0, 1),), pv_weight=0.5, prior_power=0.5),
    "pv csf/gm power .2": TissueModel(pairs=((0, 1),), prior_power=0.2),
    "pv csf/gm power .1": TissueModel(pairs=((0, 1),), prior_power=0.1),
    "pv csf/gm power 0": TissueModel(pairs=((0, 1),), prior_power=0.0),
    "power .3": TissueModel(prior_power=0.3),
}


def load(path: Path):
    with path.open("rb") as fh:
        return pickle.load(fh)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="ljubljana_patient07,isbi_training01,patient12_study1,patient12_study2")
    ap.add_argument("--flair-only", action="store_true")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--pair", action="store_true", help="patient12 BPF between visits (own masks, shared mask)")
    ap.add_argument("--pair-only", action="store_true", help="only the shared-mask pair (no per-case rows)")
    args = ap.parse_args()
    names = [v for v in args.variants.split(",") if v]
    cases = [c for c in args.cases.split(",") if c and (cache_dir(c, args.flair_only) / "prepared.pkl").is_file()]
    print(f"{'variant':18s} {'case':20s}   ICV  brain    GM    WM   CSF    BPF | %diff brain/GM/WM/CSF | Dice CSF/GM/WM | s")
    bpf: dict[tuple[str, str], float] = {}
    for case in [] if args.pair_only else cases:
        pre, mask, _source, ml, _t = load(cache_dir(case, args.flair_only) / "prepared.pkl")
        for name in names:
            res = assess_volumes(pre, mask, ml, model=VARIANTS[name])
            row = {k: v for k, v in res.to_dict().items() if k.endswith("_ml") or k == "bpf"}
            compare_with_samseg(case, row, res.labels)
            d = row.get("pct_diff")
            ds = " ".join(f"{d[k]:+5.1f}" for k in ("brain_ml", "gm_ml", "wm_ml", "csf_ml")) if d else "(no SAMSEG)"
            dc = " ".join(f"{v:.2f}" for v in row["dice"].values()) if row.get("dice") else "-"
            bpf[(name, case)] = res.bpf
            print(f"{name:18s} {case:20s} {res.icv_ml:5.0f} {res.brain_ml:6.0f} {res.gm_ml:5.0f} {res.wm_ml:5.0f} "
                  f"{res.csf_ml:5.0f} {res.bpf:.4f} | {ds} | {dc} | {res.seconds:.1f}", flush=True)
    if args.pair or args.pair_only:
        own = [(n, bpf.get((n, "patient12_study1")), bpf.get((n, "patient12_study2"))) for n in names]
        for n, a, b in own:
            if a is not None and b is not None:
                print(f"{n:18s} patient12 own masks: BPF {a:.4f} -> {b:.4f} = {100 * (b - a):+.2f} %")
        shared = CACHE / "patient12_study1_patient12_study2_shared" / "prepared.pkl"
        if shared.is_file() and not args.flair_only:
            pre0, les0, pre1, les1 = load(shared)
            for n in names:
                sep = [assess_volumes(p, m, model=VARIANTS[n]) for p, m in ((pre0, les0), (pre1, les1))]
                joint = assess_volumes_jointly([pre0, pre1], [les0, les1], model=VARIANTS[n])
                for how, (a, b) in (("separate", sep), ("joint", joint)):
                    print(f"{n:18s} patient12 shared mask, {how:8s} mixtures: BPF {a.bpf:.4f} -> {b.bpf:.4f} = "
                          f"{100 * (b.bpf - a.bpf):+.2f} %; brain {a.brain_ml:.0f} -> {b.brain_ml:.0f} "
                          f"({100 * (b.brain_ml - a.brain_ml) / a.brain_ml:+.2f} %); GM {a.gm_ml:.0f} -> {b.gm_ml:.0f}",
                          flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
