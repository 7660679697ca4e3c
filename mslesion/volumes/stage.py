"""The volumes stage of one analysis: ICV, brain, GM/WM/CSF, BPF and lesion load per ICV.

Runs on the preprocessed images (1 mm working grid, N4-corrected, brain-normalised) with the
lesions found on the native FLAIR grid. The intracranial volume (ICV) is the brain mask of the
preprocessing (deepbet's mask holds the brain and the CSF around it, i.e. the intracranial
space; an already skull-stripped input keeps its distributor's mask). Inside it, the lesions
are their own class and the rest is split into CSF, GM and WM by :func:`.tissue.classify`.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np

from ..preprocess import Preprocessed
from ..preprocess.resample import resample_like
from ..report import TISSUE_LABELS, VolumesSection
from ..volume import Volume
from . import tissue

log = logging.getLogger(__name__)

#: contrasts used for tissue classes (a post-contrast T1 is left out: enhancement would mislead)
TISSUE_CONTRASTS = ("flair", "t1", "t2")
#: minimum Dice of the warped template brain with the ICV mask for the priors to be used
MIN_PRIOR_DICE = 0.75
METHOD = "gmm-em-mni-priors"


def _num(value: float, digits: int) -> float | None:
    """Rounded value, or None where it is not finite (an empty ICV): report.json stays strict JSON."""
    return round(float(value), digits) if np.isfinite(value) else None


@dataclass(frozen=True, eq=False)
class TissueVolumes:
    """Volumes of one scan (ml) and how they were found. ``labels``: the tissue map on the native grid."""

    icv_ml: float
    brain_ml: float
    gm_ml: float
    wm_ml: float
    csf_ml: float
    lesion_ml: float
    bpf: float
    lesion_pct_icv: float
    method: str
    inputs: tuple[str, ...]
    icv_source: str
    priors: str
    caveats: tuple[str, ...] = ()
    seconds: float = 0.0
    labels: Volume | None = field(default=None, repr=False)

    def section(self) -> VolumesSection:
        """The report.json ``volumes`` section (the one place it is built: rounded, None where not finite)."""
        return VolumesSection(
            icv_ml=_num(self.icv_ml, 1), brain_ml=_num(self.brain_ml, 1), gm_ml=_num(self.gm_ml, 1),
            wm_ml=_num(self.wm_ml, 1), csf_ml=_num(self.csf_ml, 1), lesion_ml=_num(self.lesion_ml, 3),
            bpf=_num(self.bpf, 4), lesion_pct_icv=_num(self.lesion_pct_icv, 4), method=self.method,
            inputs=list(self.inputs), icv_source=self.icv_source, priors=self.priors, caveats=list(self.caveats),
            seconds=round(self.seconds, 2), labels=dict(TISSUE_LABELS))

    def to_dict(self) -> dict:
        """The report.json ``volumes`` section as a JSON object."""
        return self.section().to_dict()


def _priors(pre: Preprocessed, icv: np.ndarray, floor: float = 0.1) -> tuple[np.ndarray | None, str]:
    from .priors import mask_to_mni, warped_priors

    try:
        prior = warped_priors(pre.flair, mask_to_mni(icv, pre.flair.affine), icv, floor=floor)
    except Exception as exc:  # registration or missing maps: fall back to intensities alone
        log.warning("tissue priors unavailable (%s); tissue classes from intensities alone", exc)
        return None, f"none ({type(exc).__name__}: {exc})"
    brain = prior[..., 1] + prior[..., 2] > 0.5
    inter = np.count_nonzero(brain & icv)
    dice = 2.0 * float(inter) / float(max(1, int(np.count_nonzero(brain)) + int(np.count_nonzero(icv))))
    if dice < MIN_PRIOR_DICE:
        log.warning("MNI tissue priors fit the brain mask poorly (Dice %.2f); not used", dice)
        return None, f"none (template fit Dice {dice:.2f} < {MIN_PRIOR_DICE})"
    return prior, ("MNI152 2009 GM/WM maps (nilearn), affine fit of the ICV mask's moments, "
                   f"Dice with ICV mask {dice:.2f}")


@dataclass(frozen=True, eq=False)
class Posteriors:
    """Soft tissue classes on the working grid: ``post`` (X x Y x Z x 3: csf, gm, wm), the ICV and lesion masks."""

    post: np.ndarray
    icv: np.ndarray
    lesions: np.ndarray
    contrasts: tuple[str, ...]
    prior_note: str
    used_priors: bool


@dataclass(frozen=True)
class TissueModel:
    """Settings of the tissue mixture: partial-volume classes (pairs of CSF=0, GM=1, WM=2) and their prior
    weight (:func:`.tissue.expand_prior`), the mean-field smoothing (voxels), the spatial priors' flat floor
    (:func:`.priors.warped_priors`) and the power they are raised to (> 1: trusted more)."""

    pairs: tuple[tuple[int, int], ...] = ()
    pv_weight: float = 1.0
    smooth_vox: float = 1.0
    prior_floor: float = 0.1
    prior_power: float = 1.0


#: the model ``analyze`` and ``compare`` use: three pure classes, the warped priors raised to 0.5 (trusted less
#: than the intensities). ``scripts/bench_volumes.py --prior-power P`` (notes/issue-18.md, session 21), P = 1 /
#: 0.7 / 0.6 / 0.5: patient12 BPF change between visits -1.22 / -0.92 / -0.82 / -0.73 % (own masks) and -1.33 /
#: -1.11 / -1.04 / -0.98 % (compare; target < 1 %, SAMSEG -0.81 %); FLAIR-only isbi01 GM +23 / +16 / +13 / +9 %
#: of SAMSEG's; tissue Dice GM/WM with a T1 0.86-0.93 at every P; synthetic atrophy (1 % of the brain removed,
#: 3 seeds) -6 to -7 / -4 to -6 / -6 to -8 / -7 to -10.4 % of the tissue removed (target within 10 %). A CSF/GM
#: partial-volume class with the priors raised to 0.2 failed synthetic atrophy badly (session 17).
DEFAULT_MODEL = TissueModel(prior_power=0.5)


@dataclass(frozen=True, eq=False)
class _Scan:
    samples: tissue.Samples | None
    icv: np.ndarray
    lesions: np.ndarray
    contrasts: tuple[str, ...]
    prior_note: str
    used_priors: bool


def _scan(pre: Preprocessed, lesion_mask: Volume, use_priors: bool, model: TissueModel) -> _Scan:
    icv = pre.brain_mask.data > 0
    found = lesion_mask.with_data((np.asarray(lesion_mask.data) > 0).astype(np.float32))
    if not found.same_grid(pre.flair):
        found = resample_like(found, pre.flair, order=0)
    lesions = (found.data > 0.5) & icv
    names = tuple(c for c in TISSUE_CONTRASTS if c in pre.images)
    prior, prior_note = _priors(pre, icv, model.prior_floor) if use_priors else (None, "none (not asked for)")
    if prior is not None and model.prior_power != 1.0:
        prior = prior ** model.prior_power
        prior_note += f", raised to the power {model.prior_power:g}"
    samples = tissue.tissue_samples([pre.images[c].data for c in names], icv, lesions, prior)
    return _Scan(samples, icv, lesions, names, prior_note, prior is not None)


def _posteriors(scan: _Scan, mix: tissue.Mixture | None, model: TissueModel) -> Posteriors:
    if scan.samples is None or mix is None:
        post = np.zeros(scan.icv.shape + (len(tissue.CLASSES),), np.float32)
    else:
        post = tissue.apply_mixture(scan.samples, mix, model.smooth_vox, model.pv_weight)
    return Posteriors(post, scan.icv, scan.lesions, scan.contrasts, scan.prior_note, scan.used_priors)


def tissue_posteriors(pre: Preprocessed, lesion_mask: Volume, use_priors: bool = True,
                      model: TissueModel = DEFAULT_MODEL) -> Posteriors:
    """The tissue mixture of :func:`assess_volumes`, before any volume is summed (see there)."""
    scan = _scan(pre, lesion_mask, use_priors, model)
    mix = None if scan.samples is None else tissue.fit_samples(
        [scan.samples], tissue.CONTRAST_ORDER[scan.contrasts[0]], pairs=model.pairs, pv_weight=model.pv_weight)
    return _posteriors(scan, mix, model)


def joint_tissue_posteriors(pres: list[Preprocessed], lesion_masks: list[Volume], use_priors: bool = True,
                            model: TissueModel = DEFAULT_MODEL) -> list[Posteriors]:
    """Tissue posteriors of several scans of one head (``compare``) under ONE mixture fitted on their pooled
    voxels: the class intensities are the same at every scan (each scan's images are already normalised
    inside the brain mask), so a BPF change is not a change of fitted parameters. Falls back to one
    mixture per scan where the scans do not share their contrasts."""
    scans = [_scan(p, m, use_priors, model) for p, m in zip(pres, lesion_masks)]
    usable = [s.samples for s in scans if s.samples is not None]
    if len({s.contrasts for s in scans}) != 1 or len(usable) != len(scans):
        return [tissue_posteriors(p, m, use_priors, model) for p, m in zip(pres, lesion_masks)]
    mix = tissue.fit_samples(usable, tissue.CONTRAST_ORDER[scans[0].contrasts[0]], pairs=model.pairs,
                             pv_weight=model.pv_weight)
    return [_posteriors(s, mix, model) for s in scans]


def assess_volumes(pre: Preprocessed, lesion_mask: Volume, lesion_ml: float | None = None,
                   use_priors: bool = True, model: TissueModel = DEFAULT_MODEL) -> TissueVolumes:
    """Volumes of the subject in ``pre``.

    ``lesion_mask`` (non-zero = lesion) lies on the native FLAIR grid or on the working grid;
    ``lesion_ml`` is the reported lesion volume, used for the lesion load per ICV (None: the
    mask's volume on the working grid). ``use_priors`` False: intensities alone (phantoms, tests).
    """
    t0 = time.perf_counter()
    return volumes_from_posteriors(pre, tissue_posteriors(pre, lesion_mask, use_priors, model), lesion_ml, t0)


def assess_volumes_jointly(pres: list[Preprocessed], lesion_masks: list[Volume], use_priors: bool = True,
                           model: TissueModel = DEFAULT_MODEL) -> list[TissueVolumes]:
    """:func:`assess_volumes` of several scans of one head with one mixture (:func:`joint_tissue_posteriors`)."""
    t0 = time.perf_counter()
    found = joint_tissue_posteriors(pres, lesion_masks, use_priors, model)
    share = (time.perf_counter() - t0) / max(1, len(pres))
    return [volumes_from_posteriors(p, f, None, time.perf_counter() - share) for p, f in zip(pres, found)]


def volumes_from_posteriors(pre: Preprocessed, found: Posteriors, lesion_ml: float | None, t0: float) -> TissueVolumes:
    """The :class:`TissueVolumes` of ``pre`` from its tissue posteriors (``t0``: when the stage started)."""
    post, icv, lesions = found.post, found.icv, found.lesions
    names, prior_note = list(found.contrasts), found.prior_note
    prior = True if found.used_priors else None
    vox_ml = pre.flair.voxel_volume_ml
    vols = tissue.soft_volumes_ml(post, vox_ml)
    icv_ml = float(np.count_nonzero(icv)) * vox_ml
    lesion_work_ml = float(np.count_nonzero(lesions)) * vox_ml
    brain_ml = vols["gm"] + vols["wm"] + lesion_work_ml
    lesion_ml = lesion_work_ml if lesion_ml is None else float(lesion_ml)
    method = str(pre.brain_mask.meta.get("brain_method", "head-foreground"))
    caveats = [f"ICV is the brain mask ({method}): brain plus the CSF around it inside the skull"]
    if method == "stripped-input":
        caveats.append("the input was already skull-stripped: ICV is whatever the distributor's mask kept")
    elif method == "head-foreground":
        caveats.append("no brain extraction: ICV is the head foreground and overstates the intracranial volume")
    if names == ["flair"]:
        caveats.append("FLAIR only: grey/white contrast is low on FLAIR, so the GM/WM split leans on the priors; "
                       "give a T1 for a better split")
    if prior is None:
        caveats.append("no spatial priors: classes from intensities alone (" + prior_note + ")")
    caveats.append("lesions are a class of their own (never GM); brain = GM + WM + lesions; "
                   "lesion_pct_icv uses the reported lesion volume")
    label_work = tissue.label_map(post, icv, lesions)
    label_native = resample_like(pre.flair.with_data(label_work.astype(np.float32)), pre.native, order=0)
    label_native = label_native.with_data(np.rint(label_native.data).astype(np.uint8))
    return TissueVolumes(
        icv_ml=icv_ml, brain_ml=brain_ml, gm_ml=vols["gm"], wm_ml=vols["wm"], csf_ml=vols["csf"],
        lesion_ml=float(lesion_ml), bpf=brain_ml / icv_ml if icv_ml > 0 else float("nan"),
        lesion_pct_icv=100.0 * float(lesion_ml) / icv_ml if icv_ml > 0 else float("nan"),
        method=METHOD if prior is not None else "gmm-em-intensity", inputs=tuple(names),
        icv_source=method, priors=prior_note, caveats=tuple(caveats),
        seconds=time.perf_counter() - t0, labels=label_native)
