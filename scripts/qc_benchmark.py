"""Time the QC step (mosaics + gallery + report.html) on real subjects.

Runs the pipeline once per subject (model given by --model, default baseline),
then times ``write_subject_qc`` alone (wall and CPU seconds, the machine's load
average alongside since it is shared), and prints HTML size and PNG count.

    OMP_NUM_THREADS=2 .venv/bin/python scripts/qc_benchmark.py --out /tmp/qc_bench
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from mslesion.pipeline import AnalyzeOptions, Analyzer
from mslesion.qc import write_subject_qc

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "brain_ms"
SUBJECTS = {
    "isbi_training01": DATA / "isbi2015/training01/flair.nii.gz",
    "isbi_training02": DATA / "isbi2015/training02/flair.nii.gz",
    "ljubljana_patient07": DATA / "ljubljana/patient07/flair.nii.gz",
    "ljubljana_patient26": DATA / "ljubljana/patient26/flair.nii.gz",
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("/tmp/qc_bench"))
    ap.add_argument("--model", default="baseline")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--subjects", nargs="*", default=list(SUBJECTS))
    args = ap.parse_args()
    analyzer = Analyzer(AnalyzeOptions(model=args.model))
    for name in args.subjects:
        out = args.out / name
        t0 = time.perf_counter()
        result = analyzer.run({"flair": SUBJECTS[name]}, out)  # writes report.html via the pipeline
        total = time.perf_counter() - t0
        times, cpu = [], []
        for _ in range(args.repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            html = write_subject_qc(result, out)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        pngs = sorted((out / "qc").glob("*.png"))
        print(json.dumps({"subject": name, "model": result.report["model"]["id"],
                          "lesions": result.report["lesion_count"],
                          "flair_shape": result.report["inputs"]["flair"]["shape"],
                          "qc_seconds_best": round(min(times), 2), "qc_seconds_all": [round(t, 2) for t in times],
                          "qc_cpu_seconds_best": round(min(cpu), 2), "load_avg_1min": round(os.getloadavg()[0], 1),
                          "pipeline_total_seconds": round(total, 1), "html_MB": round(html.stat().st_size / 1e6, 2),
                          "png_files": len(pngs)}), flush=True)


if __name__ == "__main__":
    main()
