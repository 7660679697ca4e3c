#!/usr/bin/env python
"""Brain volumes (issue 18) on the shared brain scans, against SAMSEG, plus consistency and synthetic atrophy.

    nice -n 19 .venv/bin/python -m scripts.bench_volumes [--cases a,b] [--flair-only] [--atrophy CASE]

Needs ../shared/data and, for the SAMSEG columns, the reference outputs of
``scripts/samseg_reference.sh`` under .devdata/samseg/<case>/ (cases it has not finished
are reported without them). For every case it preprocesses as ``mslesion analyze`` does
(FLAIR, plus T1 where the case has one; ``--flair-only``: FLAIR alone), takes the lesions
from the expert mask (ISBI: rater 1, moved to the FLAIR grid by world coordinates;
longitudinal patient12 has none: the default model's lesions), and prints:
  * ICV, brain, GM, WM, CSF, BPF and the % difference from SAMSEG's (samseg.stats: soft volumes;
    SAMSEG's ICV is its own sbtiv);
  * tissue Dice against SAMSEG's seg.mgz with its labels mapped to CSF/GM/WM/lesion (:data:`SAMSEG_CLASSES`);
  * the time the volumes stage added;
then the patient12 BPF difference between visits and the P14 ICV spread over its three visits,
and synthetic atrophy: parenchyma at the brain surface of ``--atrophy`` replaced by CSF (its
voxels' values copied from random CSF voxels, all contrasts) in known amounts; the reported
brain volume must drop by that amount within 10 %.
"""
from __future__ import annotations

import argparse
import json
import pickle
import re
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mslesion.io import load_volume, save_volume  # noqa: E402
from mslesion.preprocess import preprocess  # noqa: E402
from mslesion.preprocess.resample import resample_like  # noqa: E402
from mslesion.report import VolumeChange  # noqa: E402
from mslesion.volume import Volume  # noqa: E402
from mslesion.volumes import assess_volumes  # noqa: E402
from mslesion.volumes.stage import DEFAULT_MODEL, TissueModel, tissue_posteriors  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "brain_ms"
SAMSEG = ROOT / ".devdata" / "samseg"
CACHE = ROOT / ".devdata" / "volumes_bench"

#: case -> (flair, t1 or None, lesion mask or None), relative to DATA
CASES = {
    "ljubljana_patient07": ("ljubljana/patient07/flair", "ljubljana/patient07/t1", "ljubljana/patient07/lesions"),
    "ljubljana_patient26": ("ljubljana/patient26/flair", "ljubljana/patient26/t1", "ljubljana/patient26/lesions"),
    "isbi_training01": ("isbi2015/training01/flair", None, "isbi2015/training01/lesions_rater1"),
    "isbi_training02": ("isbi2015/training02/flair", None, "isbi2015/training02/lesions_rater1"),
    "isbi_training03": ("isbi2015/training03/flair", None, "isbi2015/training03/lesions_rater1"),
    "patient12_study1": ("longitudinal/patient12/study1_flair", "longitudinal/patient12/study1_t1", None),
    "patient12_study2": ("longitudinal/patient12/study2_flair", "longitudinal/patient12/study2_t1", None),
    "mslesseg_P14_T1": ("mslesseg/P14_T1/flair", "mslesseg/P14_T1/t1", "mslesseg/P14_T1/lesions"),
    "mslesseg_P14_T2": ("mslesseg/P14_T2/flair", "mslesseg/P14_T2/t1", "mslesseg/P14_T2/lesions"),
    "mslesseg_P14_T3": ("mslesseg/P14_T3/flair", "mslesseg/P14_T3/t1", "mslesseg/P14_T3/lesions"),
    "mslesseg_P18_T1": ("mslesseg/P18_T1/flair", "mslesseg/P18_T1/t1", "mslesseg/P18_T1/lesions"),
    "mslesseg_P39_T1": ("mslesseg/P39_T1/flair", "mslesseg/P39_T1/t1", "mslesseg/P39_T1/lesions"),
}

#: SAMSEG (FreeSurfer) labels -> our classes: 1 CSF, 2 GM, 3 WM, 4 lesion (0: outside / not counted)
SAMSEG_CLASSES = {
    1: (4, 5, 14, 15, 24, 31, 43, 44, 63, 72),            # ventricles, CSF, choroid plexus
    2: (3, 8, 10, 11, 12, 13, 17, 18, 26, 42, 47, 49, 50, 51, 52, 53, 54, 58, 80),  # cortex, cerebellar cortex, deep GM
    3: (2, 7, 16, 28, 41, 46, 60, 77, 85),               # cerebral/cerebellar WM, brain stem, ventral DC, WM-hypo
    4: (99,),                                             # lesions
}
#: samseg.stats structure names -> class (soft volumes); vessels are left out of every class
STATS_CLASSES = {
    "csf": r"(Ventricle|^CSF$|choroid-plexus|Inf-Lat-Vent)",
    "gm": r"(Cerebral-Cortex|Cerebellum-Cortex|Thalamus|Caudate|Putamen|Pallidum|Hippocampus|Amygdala|Accumbens|non-WM-hypo)",
    "wm": r"(Cerebral-White-Matter|Cerebellum-White-Matter|Brain-Stem|VentralDC|^WM-hypointensities|Optic-Chiasm)",
    "lesion": r"^Lesions$",
}
#: samseg.stats structures outside the intracranial volume; on a skull-stripped input every one of them lies
#: inside the distributor's brain mask (SAMSEG labels only the non-zero foreground there)
STATS_NONBRAIN = r"^(Skull|Soft_Nonbrain_Tissue|Fluid_Inside_Eyes)$"


def nii(rel: str | None) -> Path | None:
    return None if rel is None else DATA / f"{rel}.nii.gz"


def samseg_volumes(case: str) -> dict | None:
    """SAMSEG's ICV (sbtiv) and soft class volumes (ml) from samseg.stats, or None if not finished."""
    stats = SAMSEG / case / "samseg.stats"
    if not stats.is_file():
        return None
    vols: dict[str, float] = {}
    for line in stats.read_text().splitlines():
        m = re.match(r"# Measure (.+?), ([0-9.eE+-]+), mm\^3", line)
        if m:
            vols[m.group(1).strip()] = float(m.group(2)) / 1000.0
    out = {"icv_ml": vols.get("Intra-Cranial", float("nan"))}
    for cls, pat in STATS_CLASSES.items():
        out[f"{cls}_ml"] = sum(v for k, v in vols.items() if re.search(pat, k))
    out["brain_ml"] = out["gm_ml"] + out["wm_ml"] + out["lesion_ml"]
    out["bpf"] = out["brain_ml"] / out["icv_ml"]
    out["nonbrain_ml"] = sum(v for k, v in vols.items() if re.search(STATS_NONBRAIN, k))
    return out


def samseg_labels(case: str) -> Volume | None:
    seg = SAMSEG / case / "seg.mgz"
    if not seg.is_file():
        return None
    import nibabel as nib

    img = nib.load(str(seg))
    data = np.asarray(img.dataobj).astype(np.int32)
    out = np.zeros(data.shape, np.uint8)
    for cls, labels in SAMSEG_CLASSES.items():
        out[np.isin(data, labels)] = cls
    return Volume(out, img.affine)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    s = int(a.sum()) + int(b.sum())
    return 2.0 * int(np.count_nonzero(a & b)) / s if s else float("nan")


def lesion_mask(case: str, flair: Volume, pre, flair_only: bool) -> tuple[Volume, str]:
    rel = CASES[case][2]
    if rel is not None:
        mask = load_volume(nii(rel), role="lesions")
        mask = mask.with_data((mask.data > 0).astype(np.float32))
        if not mask.same_grid(flair):
            mask = resample_like(mask, flair, order=0)
        return mask, "expert"
    from mslesion.segment import load_segmenter

    seg = load_segmenter("auto", contrasts=set(pre.images), device="cpu")
    prob = seg.predict(pre)
    return pre.flair.with_data((prob.data >= seg.threshold).astype(np.float32)), f"model {seg.model_id}"


def compare_with_samseg(case: str, row: dict, labels: Volume) -> None:
    """Add SAMSEG's volumes, the % differences and the tissue Dice to ``row`` (if SAMSEG finished ``case``)."""
    ref = samseg_volumes(case)
    if ref is None:
        return
    row["samseg"] = {k: round(v, 4 if k == "bpf" else 1) for k, v in ref.items()}
    row["pct_diff"] = {k: round(100.0 * (row[k] - ref[k]) / ref[k], 1)
                       for k in ("icv_ml", "brain_ml", "gm_ml", "wm_ml", "csf_ml")}
    row["bpf_diff"] = round(row["bpf"] - ref["bpf"], 4)
    lab = samseg_labels(case)
    ours = labels if labels.same_grid(lab) else resample_like(
        labels.with_data(labels.data.astype(np.float32)), lab, order=0)
    o = np.rint(ours.data).astype(np.uint8)
    row["dice"] = {name: round(dice(o == k, lab.data == k), 3) for k, name in ((1, "csf"), (2, "gm"), (3, "wm"))}


def cache_dir(case: str, flair_only: bool) -> Path:
    return CACHE / (case + ("_flair" if flair_only else ""))


def cached(case: str, flair_only: bool) -> tuple[dict, Volume] | None:
    folder = cache_dir(case, flair_only)
    if not (folder / "row.json").is_file():
        return None
    lab = load_volume(folder / "tissue_dseg.nii.gz", role="labels")
    return json.loads((folder / "row.json").read_text()), lab


def pickled(path: Path, make):
    """``make()``, cached as a pickle at ``path`` (the preprocessing and lesions of a case: minutes each)."""
    if path.is_file():
        with path.open("rb") as fh:
            return pickle.load(fh)
    value = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        pickle.dump(value, fh, protocol=pickle.HIGHEST_PROTOCOL)
    return value


def prepared(case: str, flair_only: bool, keep: bool):
    """(pre, lesion mask, its source, lesion ml, preprocessing seconds) of ``case``; ``keep``: cached in
    .devdata/volumes_bench/<case>/prepared.pkl so that a change of the tissue model re-runs in seconds."""
    flair_rel, t1_rel, _ = CASES[case]

    def make():
        vols = {"flair": load_volume(nii(flair_rel), role="FLAIR")}
        if t1_rel and not flair_only:
            vols["t1"] = load_volume(nii(t1_rel), role="T1")
        t0 = time.perf_counter()
        pre = preprocess(vols)
        t_pre = time.perf_counter() - t0
        mask, source = lesion_mask(case, vols["flair"], pre, flair_only)
        ml = float(np.count_nonzero(mask.data)) * mask.voxel_volume_ml if mask.same_grid(vols["flair"]) else None
        return pre, mask, source, ml, t_pre

    return pickled(cache_dir(case, flair_only) / "prepared.pkl", make) if keep else make()


def run_case(case: str, flair_only: bool, keep: bool = False, model: TissueModel = DEFAULT_MODEL) -> tuple:
    pre, mask, source, ml, t_pre = prepared(case, flair_only, keep)
    t0 = time.perf_counter()
    res = assess_volumes(pre, mask, ml, model=model)
    t_vol = time.perf_counter() - t0
    row = {"case": case, "inputs": "+".join(res.inputs), "lesions": source, "preprocess_s": round(t_pre, 1),
           "volumes_s": round(t_vol, 2), **{k: v for k, v in res.to_dict().items()
                                           if k in ("icv_ml", "brain_ml", "gm_ml", "wm_ml", "csf_ml", "lesion_ml",
                                                    "bpf", "icv_source")}}
    folder = cache_dir(case, flair_only)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "row.json").write_text(json.dumps(row))
    save_volume(res.labels, folder / "tissue_dseg.nii.gz", dtype=np.uint8)
    return row, pre, res, mask


def atrophy(pre, res, mask, fractions=(0.01, 0.02, 0.05), seed: int = 0, donor_min_csf: float | None = None,
            model: TissueModel = DEFAULT_MODEL) -> list[dict]:
    """Replace parenchyma at the brain's outer/ventricular surface by CSF in known amounts; re-measure.

    Donor intensities come from voxels labelled CSF; ``donor_min_csf``: only from voxels whose CSF
    posterior is at least this (pure CSF, not the CSF/GM edge a partial-volume model labels CSF)."""
    work = resample_like(res.labels.with_data(res.labels.data.astype(np.float32)), pre.flair, order=0).data
    labels = np.rint(work).astype(np.uint8)
    parenchyma = (labels == 2) | (labels == 3)
    csf = labels == 1
    vox_ml = pre.flair.voxel_volume_ml
    rng = np.random.default_rng(seed)
    csf_idx = np.flatnonzero(csf)
    before = tissue_posteriors(pre, mask, model=model)
    brain_frac = before.post[..., 1] + before.post[..., 2]
    if donor_min_csf is not None:
        csf_idx = np.flatnonzero(csf & (before.post[..., 0] >= donor_min_csf))
    out = []
    base = res.brain_ml
    for frac in fractions:
        target = int(round(frac * base / vox_ml))
        removed = np.zeros_like(parenchyma)
        front = csf.copy()
        # grow CSF into the parenchyma layer by layer, from the top of the head down within a layer,
        # until the target volume is reached: a contiguous loss at the surface (not scattered voxels)
        while removed.sum() < target:
            layer = ndimage.binary_dilation(front) & parenchyma & ~removed
            if not layer.any():
                break
            need = target - int(removed.sum())
            idx = np.flatnonzero(layer)
            if idx.size > need:
                z = np.unravel_index(idx, layer.shape)[2]
                idx = idx[np.argsort(-z, kind="stable")[:need]]
            removed.flat[idx] = True
            front |= removed
        images = {}
        donors = rng.choice(csf_idx, size=int(removed.sum()))
        for name, img in pre.images.items():
            data = img.data.copy()
            data[removed] = img.data.flat[donors]
            images[name] = img.with_data(data)
        pre2 = replace(pre, images=images)
        res2 = assess_volumes(pre2, mask, res.lesion_ml, model=model)
        voxels_ml = float(removed.sum()) * vox_ml
        # the tissue that was there: each removed voxel's brain fraction before (edge voxels are partly CSF)
        known = float(brain_frac[removed].sum(dtype=np.float64)) * vox_ml
        change = base - res2.brain_ml
        out.append({"removed_voxels_ml": round(voxels_ml, 1), "removed_ml": round(known, 1),
                    "brain_change_ml": round(change, 1),
                    "error_pct": round(100.0 * (change - known) / known, 1) if known else None,
                    "error_vs_voxels_pct": round(100.0 * (change - voxels_ml) / voxels_ml, 1) if voxels_ml else None,
                    "icv_change_ml": round(res2.icv_ml - res.icv_ml, 1)})
    return out


def shared_mask_consistency(pair=("patient12_study1", "patient12_study2"), keep: bool = False,
                            model: TissueModel = DEFAULT_MODEL) -> VolumeChange:
    """As ``mslesion compare`` measures it: one brain mask (the first scan's, moved by the rigid
    registration) for both scans, lesions from the default model on each, volumes by the library's
    :func:`compare_volumes`; returns its ``volume_change`` (both BPFs). ``keep``: the preprocessed
    pair and lesions cached in .devdata/volumes_bench/<pair>_shared/prepared.pkl."""
    from mslesion.volumes.outputs import compare_volumes

    def make():
        from dataclasses import replace as dc_replace

        from mslesion.longitudinal.compare import _registration_view, _with_brain
        from mslesion.preprocess import PreprocessOptions
        from mslesion.preprocess.registration import register_rigid, resample_moving
        from mslesion.segment import load_segmenter

        vols = []
        for case in pair:
            flair_rel, t1_rel, _ = CASES[case]
            vols.append({"flair": load_volume(nii(flair_rel), role="FLAIR"),
                         "t1": load_volume(nii(t1_rel), role="T1")})
        pre0 = preprocess(vols[0])
        pre1 = preprocess(vols[1], dc_replace(PreprocessOptions(), skull_strip=False))
        fixed, fmask = _registration_view(pre0.flair, pre0.brain_mask.data > 0)
        moving, _ = _registration_view(pre1.flair, pre1.brain_mask.data > 0)
        transform = register_rigid(fixed, moving, fixed_mask=fmask)
        back = np.linalg.inv(transform)
        mask1 = resample_moving(pre0.brain_mask.with_data(pre0.brain_mask.data.astype(np.float32)), pre1.flair,
                                back, 1)
        pre1 = _with_brain(pre1, mask1.data >= 0.5)
        seg = load_segmenter("auto", contrasts={"flair", "t1"}, device="cpu")
        les = []
        for pre in (pre0, pre1):
            prob = seg.predict(pre)
            les.append(prob.with_data((prob.data >= seg.threshold).astype(np.float32)))
        return pre0, les[0], pre1, les[1]

    folder = CACHE / ("_".join(pair) + "_shared")
    pre0, les0, pre1, les1 = pickled(folder / "prepared.pkl", make) if keep else make()
    return compare_volumes(pre0, les0, pre1, les1, 0.5, model=model)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=",".join(CASES), help="comma-separated case names")
    ap.add_argument("--flair-only", action="store_true", help="FLAIR alone, even where a T1 exists")
    ap.add_argument("--atrophy", default="ljubljana_patient07", help="case for the synthetic atrophy ('' : none)")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    ap.add_argument("--atrophy-donor-min-csf", type=float, default=None,
                    help="synthetic atrophy: copy CSF values only from voxels with at least this CSF posterior")
    ap.add_argument("--shared-mask", action="store_true",
                    help="also patient12's BPF change with one brain mask for both visits, as `compare` does")
    ap.add_argument("--reuse", action="store_true",
                    help="reuse our results cached in .devdata/volumes_bench (only re-compare with SAMSEG)")
    ap.add_argument("--keep-prepared", action="store_true",
                    help="cache each case's preprocessing and lesions in .devdata/volumes_bench/<case>/prepared.pkl "
                         "and reuse them: a change of the tissue model then re-runs in seconds")
    ap.add_argument("--prior-power", type=float, default=DEFAULT_MODEL.prior_power,
                    help="the tissue model's prior power (TissueModel.prior_power; default: the library's)")
    args = ap.parse_args()
    model = replace(DEFAULT_MODEL, prior_power=args.prior_power)
    print(f"tissue model: {model}")
    rows = []
    for case in [c for c in args.cases.split(",") if c]:
        hit = cached(case, args.flair_only) if args.reuse else None
        if hit is not None:
            row, labels = hit
        else:
            row, pre, res, mask = run_case(case, args.flair_only, args.keep_prepared, model)
            labels = res.labels
            if case == args.atrophy:
                row["atrophy"] = atrophy(pre, res, mask, donor_min_csf=args.atrophy_donor_min_csf, model=model)
                row["atrophy_donor_min_csf"] = args.atrophy_donor_min_csf
                (cache_dir(case, args.flair_only) / "row.json").write_text(json.dumps(row))
        compare_with_samseg(case, row, labels)
        rows.append(row)
        print(json.dumps(row), flush=True)
    by = {r["case"]: r for r in rows}
    print("\ncase                 inputs    ICV    brain   GM     WM     CSF    BPF    | %diff vs SAMSEG ICV/brain/GM/WM | Dice CSF/GM/WM | s")
    stripped = [r for r in rows if r.get("icv_source") == "stripped-input" or r["case"].startswith("mslesseg")]
    for r in rows:
        d = r.get("pct_diff")
        ds = " ".join(f"{d[k]:+5.1f}" for k in ("icv_ml", "brain_ml", "gm_ml", "wm_ml")) if d else "   (no SAMSEG)         "
        dc = " ".join(f"{v:.2f}" for v in r["dice"].values()) if r.get("dice") else "  -  "
        print(f"{r['case']:20s} {r['inputs']:9s} {r['icv_ml']:6.0f} {r['brain_ml']:6.0f} {r['gm_ml']:6.0f} "
              f"{r['wm_ml']:6.0f} {r['csf_ml']:6.0f} {r['bpf']:.3f}  | {ds} | {dc} | {r['volumes_s']}")
    for r in stripped:
        if r.get("samseg"):
            print(f"{r['case']}: skull-stripped input; SAMSEG labels {r['samseg']['nonbrain_ml']:.0f} ml of it skull or "
                  "soft non-brain tissue, outside its ICV")
    if "patient12_study1" in by and "patient12_study2" in by:
        a, b = by["patient12_study1"], by["patient12_study2"]
        print(f"\npatient12 BPF study1 {a['bpf']:.4f} study2 {b['bpf']:.4f}: difference {100 * (b['bpf'] - a['bpf']):+.2f} % "
              f"(absolute; target < 1 %); ICV {a['icv_ml']:.0f} vs {b['icv_ml']:.0f} ml")
    if args.shared_mask:
        vc = shared_mask_consistency(keep=args.keep_prepared, model=model)
        print(f"patient12, one brain mask for both visits (as `compare`): BPF {vc.baseline['bpf']:.4f} -> "
              f"{vc.followup['bpf']:.4f}, difference {100 * vc.bpf_change:+.2f} % (absolute; target < 1 %); "
              f"brain {vc.brain_pct_change:+.2f} %")
    p14 = [by[c] for c in ("mslesseg_P14_T1", "mslesseg_P14_T2", "mslesseg_P14_T3") if c in by]
    if len(p14) > 1:
        icvs = np.array([r["icv_ml"] for r in p14])
        print(f"P14 ICV over {len(p14)} visits: {', '.join(f'{v:.0f}' for v in icvs)} ml; spread (max-min) "
              f"{icvs.max() - icvs.min():.1f} ml = {100 * (icvs.max() - icvs.min()) / icvs.mean():.2f} %; "
              "BPF " + ", ".join(f"{r['bpf']:.4f}" for r in p14))
    for r in rows:
        for a in r.get("atrophy", []):
            print(f"synthetic atrophy on {r['case']}: removed {a.get('removed_voxels_ml')} ml of voxels holding "
                  f"{a['removed_ml']} ml of tissue -> brain volume down {a['brain_change_ml']} ml "
                  f"({a['error_pct']:+.1f} % of the tissue, {a.get('error_vs_voxels_pct', float('nan')):+.1f} % of the voxels; "
                  "target within 10 %)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
