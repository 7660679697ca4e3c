#!/usr/bin/env bash
# One GPU run: leave-one-subject-out folds + final models, trained in parallel on one GPU,
# then GPU inference timing. Usage (repo root, on the device machine):
#   bash scripts/gpu_train.sh SECONDS OUTDIR [DATA]
# SECONDS: training time box per model; OUTDIR receives final.tar, cv.tar, logs.
# ONLY_FLAIR=1 trains just the FLAIR model's 5 folds + final (6 processes instead of 9: more steps each).
# TRAIN_ARGS is passed to every scripts/train.py call, e.g. TRAIN_ARGS="--synthetic-lesions 0.3".
set -u
SECS=${1:-360}
OUTDIR=${2:-/tmp/gpu_out}
DATA=${3:-.devdata/train}
PY=${PYTHON:-python3}
R=/tmp/runs
mkdir -p "$R" "$OUTDIR"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
if ls .whl/*.whl >/dev/null 2>&1 && ! $PY -c "import nibabel" 2>/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3
  export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee "$OUTDIR/gpu.txt"
$PY -c "import torch;print('torch', torch.__version__, torch.cuda.is_available())" | tee -a "$OUTDIR/gpu.txt"
COMMON="--data $DATA --max-seconds $SECS --iterations 1000000 --seed 0 ${TRAIN_ARGS:-}"
pids=""
for s in ljubljana_patient07 ljubljana_patient26 isbi_training01 isbi_training02 isbi_training03; do
  $PY scripts/train.py $COMMON --channels flair --holdout $s --out $R/cvflair_$s > $R/cvflair_$s.log 2>&1 &
  pids="$pids $!"
done
MULTI_SUBJECTS="ljubljana_patient07 ljubljana_patient26"
[ "${ONLY_FLAIR:-0}" = 1 ] && MULTI_SUBJECTS=""
for s in $MULTI_SUBJECTS; do
  $PY scripts/train.py $COMMON --channels flair,t1,t2 --holdout $s --out $R/cvmulti_$s > $R/cvmulti_$s.log 2>&1 &
  pids="$pids $!"
done
$PY scripts/train.py $COMMON --channels flair --out $R/final_flair > $R/final_flair.log 2>&1 &
pids="$pids $!"
if [ -n "$MULTI_SUBJECTS" ]; then
  $PY scripts/train.py $COMMON --channels flair,t1,t2 --out $R/final_multi > $R/final_multi.log 2>&1 &
  pids="$pids $!"
fi
sleep 60; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv | tee -a "$OUTDIR/gpu.txt"
fail=0
for p in $pids; do wait $p || fail=$((fail+1)); done
echo "training processes failed: $fail" | tee -a "$OUTDIR/gpu.txt"
tail -n 2 $R/*.log
# package final models and time GPU inference on a 182x218x182 volume
for m in flair ${MULTI_SUBJECTS:+multi}; do
  $PY - "$R/final_$m" "$R/model_$m" <<'PYEOF'
import sys
from pathlib import Path
from mslesion.model.store import package_run
package_run(Path(sys.argv[1]), Path(sys.argv[2]), "candidate")
PYEOF
done
$PY scripts/bench_model.py timing --model $R/model_flair --device ${TIMING_DEVICE:-cuda} --repeats 3 --both-tta 2>&1 | grep '^{' | tee "$OUTDIR/gpu_timing.jsonl"
[ -n "$MULTI_SUBJECTS" ] && $PY scripts/bench_model.py timing --model $R/model_multi --device ${TIMING_DEVICE:-cuda} --repeats 2 --both-tta \
  --case $DATA/ljubljana_patient26.npz 2>&1 | grep '^{' | tee -a "$OUTDIR/gpu_timing.jsonl"
(cd $R && tar cf "$OUTDIR/final.tar" final_flair ${MULTI_SUBJECTS:+final_multi} *.log)
(cd $R && tar cf "$OUTDIR/cv.tar" --exclude=weights.pt cvflair_* ${MULTI_SUBJECTS:+cvmulti_*})
ls -la "$OUTDIR"
