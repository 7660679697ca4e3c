"""Peak RSS of `mslesion analyze` on a large synthetic volume (default 512x512x300).

    .venv/bin/python scripts/bench_memory.py                      # 0.5x0.5x0.6 mm
    .venv/bin/python scripts/bench_memory.py --zooms 1 1 1        # worst case: 1 mm grid as large as the input

The volume is a synthetic head phantom (ellipsoid brain, ventricles, bright
spherical lesions, noise) written as NIfTI to a temp folder.  ``analyze``
runs in a child process; its peak RSS comes from ``os.wait4`` (the kernel's
``ru_maxrss`` for that child only).  Also printed: the header-based estimate
of :func:`mslesion.memory.estimate_peak_bytes`, so the guard can be checked
against reality.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
#: semi-axes of the phantom brain (about 1.45 L, inside the preprocessing's plausible-brain range)
BRAIN_RADII_MM = (68.0, 85.0, 60.0)


def make_volume(shape: tuple[int, int, int], zooms: tuple[float, float, float], seed: int = 0) -> nib.Nifti1Image:
    """Head phantom built axis by axis (float32) so the generator itself stays small."""
    rng = np.random.default_rng(seed)
    c = [(s - 1) / 2 for s in shape]
    r = [rm / z for rm, z in zip(BRAIN_RADII_MM, zooms)]  # an adult-sized brain, whatever the field of view
    ax = [((np.arange(s, dtype=np.float32) - c[i]) / r[i]) ** 2 for i, s in enumerate(shape)]
    rr = ax[0][:, None, None] + ax[1][None, :, None] + ax[2][None, None, :]
    data = np.zeros(shape, np.int16)
    data[rr <= 1.22**2] = 600
    data[rr <= 1.0] = 550
    data[rr <= 0.64] = 450
    vent = [((np.arange(s, dtype=np.float32) - c[i]) / (r[i] * f)) ** 2 for i, (s, f) in enumerate(zip(shape, (0.18, 0.3, 0.25)))]
    data[(vent[0][:, None, None] + vent[1][None, :, None] + vent[2][None, None, :]) <= 1.0] = 100
    del rr
    for _ in range(12):  # lesions of 3-6 mm radius in white matter
        centre = [int(ci + rng.uniform(-0.4, 0.4) * ri) for ci, ri in zip(c, r)]
        rad = rng.uniform(3, 6)
        sl = tuple(slice(max(0, int(ce - rad / z) - 1), int(ce + rad / z) + 2) for ce, z in zip(centre, zooms))
        g = np.ogrid[sl]
        d2 = sum(((gi - ce) * z) ** 2 for gi, ce, z in zip(g, centre, zooms))
        sub = data[sl]
        sub[(d2 <= rad**2) & (sub > 200)] = 1000
    noise = rng.normal(0, 10, shape[2]).astype(np.int16)  # cheap slice-wise jitter
    data += (data > 0) * noise[None, None, :]
    aff = np.diag([*zooms, 1.0])
    aff[:3, 3] = -np.asarray(zooms) * (np.asarray(shape) - 1) / 2
    return nib.Nifti1Image(data, aff)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", type=int, nargs=3, default=[512, 512, 300])
    ap.add_argument("--zooms", type=float, nargs=3, default=[0.5, 0.5, 0.6])
    ap.add_argument("--model", default="baseline")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more arguments for analyze")
    args = ap.parse_args()
    from mslesion.memory import estimate_peak_bytes, read_header_shape

    with tempfile.TemporaryDirectory(prefix="mslesion-bench-") as tmp:
        flair = Path(tmp) / "flair.nii.gz"
        t0 = time.perf_counter()
        nib.save(make_volume(tuple(args.shape), tuple(args.zooms)), str(flair))
        print(f"volume {tuple(args.shape)} zooms {tuple(args.zooms)} int16, written in {time.perf_counter() - t0:.1f}s")
        shape, zooms, dtype = read_header_shape(flair)
        est = estimate_peak_bytes(shape, zooms, trained_model=args.model not in ("baseline", "flair-threshold-baseline"))
        cmd = [sys.executable, "-c", "from mslesion.cli import entry_point; entry_point()", "analyze", "--flair", str(flair), "--out", str(Path(tmp) / "out"),
               "--model", args.model, *args.extra]
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
               "OPENBLAS_NUM_THREADS": str(args.threads)}
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        out, err = proc.stdout.read().decode(), proc.stderr.read().decode()  # type: ignore[union-attr]
        rc = os.waitstatus_to_exitcode(status)
        peak_gb = usage.ru_maxrss * 1024 / 1e9
        print(f"command: mslesion {' '.join(cmd[3:])}")
        print(f"exit code {rc}, wall {wall:.1f}s")
        print(f"stdout: {out.strip()}")
        if err.strip():
            print(f"stderr: {err.strip()[-2000:]}")
        print(f"estimated peak {est / 1e9:.2f} GB (mslesion.memory.estimate_peak_bytes)")
        print(f"measured peak RSS {peak_gb:.2f} GB (target <= 4 GB): {'MET' if peak_gb <= 4.0 else 'NOT MET'}")
    return 0 if rc == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
