#!/usr/bin/env bash
# SAMSEG reference segmentations for the volumes benchmark (issue 18).
#
# Creates a separate venv (.devdata/samseg-venv: samseg 0.4a0 from PyPI plus
# tensorflow-cpu, which `--lesion` needs), then runs `run_samseg --lesion` on the
# shared brain scans, one at a time, FLAIR first (so outputs lie on the FLAIR grid),
# with T1 where the case has one. Outputs: .devdata/samseg/<case>/ (git-ignored).
#
#   nice -n 19 scripts/samseg_reference.sh [case ...]     # default: all, most informative first
#
# Install cost measured on this machine (2 cores): samseg wheel + deps 415 MB, ~70 s;
# tensorflow-cpu adds ~1.5 GB (1.9 GB venv in all), ~45 s. samseg needs numpy<2.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${MSLESION_SHARED_DATA:-../shared/data}/brain_ms
VENV=.devdata/samseg-venv
OUT=.devdata/samseg
THREADS=${THREADS:-2}

if [ ! -x "$VENV/bin/run_samseg" ]; then
  python3.11 -m venv "$VENV"
  "$VENV/bin/pip" install -q samseg tensorflow-cpu
  "$VENV/bin/pip" install -q "numpy<2"
fi

# case -> "flair [t1] | coregister(0/1)"
declare -A FLAIR T1 COREG
add() { FLAIR[$1]=$2; T1[$1]=${3:-}; COREG[$1]=${4:-0}; }
add ljubljana_patient07 "$DATA/ljubljana/patient07/flair.nii.gz" "$DATA/ljubljana/patient07/t1.nii.gz"
add isbi_training01 "$DATA/isbi2015/training01/flair.nii.gz"
add patient12_study1 "$DATA/longitudinal/patient12/study1_flair.nii.gz" "$DATA/longitudinal/patient12/study1_t1.nii.gz" 1
add patient12_study2 "$DATA/longitudinal/patient12/study2_flair.nii.gz" "$DATA/longitudinal/patient12/study2_t1.nii.gz" 1
add mslesseg_P14_T1 "$DATA/mslesseg/P14_T1/flair.nii.gz" "$DATA/mslesseg/P14_T1/t1.nii.gz"
add ljubljana_patient26 "$DATA/ljubljana/patient26/flair.nii.gz" "$DATA/ljubljana/patient26/t1.nii.gz"
add mslesseg_P14_T2 "$DATA/mslesseg/P14_T2/flair.nii.gz" "$DATA/mslesseg/P14_T2/t1.nii.gz"
add mslesseg_P14_T3 "$DATA/mslesseg/P14_T3/flair.nii.gz" "$DATA/mslesseg/P14_T3/t1.nii.gz"
add isbi_training02 "$DATA/isbi2015/training02/flair.nii.gz"
add isbi_training03 "$DATA/isbi2015/training03/flair.nii.gz"
add mslesseg_P18_T1 "$DATA/mslesseg/P18_T1/flair.nii.gz" "$DATA/mslesseg/P18_T1/t1.nii.gz"
add mslesseg_P39_T1 "$DATA/mslesseg/P39_T1/flair.nii.gz" "$DATA/mslesseg/P39_T1/t1.nii.gz"
ORDER=(ljubljana_patient07 isbi_training01 patient12_study1 patient12_study2 mslesseg_P14_T1
       ljubljana_patient26 mslesseg_P14_T2 mslesseg_P14_T3 isbi_training02 isbi_training03
       mslesseg_P18_T1 mslesseg_P39_T1)
[ $# -gt 0 ] && ORDER=("$@")

for c in "${ORDER[@]}"; do
  d=$OUT/$c
  if [ -f "$d/seg.mgz" ]; then echo "$c: done already"; continue; fi
  mkdir -p "$d"
  args=(-i "${FLAIR[$c]}"); modes=(flair); pattern=(1)   # lesions are bright on FLAIR
  if [ -n "${T1[$c]}" ]; then args+=("${T1[$c]}"); modes+=(t1); pattern+=(0); fi
  extra=(); [ "${COREG[$c]}" = 1 ] && extra=(--coregister)
  echo "$c: start $(date -u +%H:%M:%S)"
  start=$(date +%s)
  OMP_NUM_THREADS=$THREADS "$VENV/bin/run_samseg" -o "$d" "${args[@]}" -m "${modes[@]}" "${extra[@]}" \
     --lesion --lesion-mask-pattern "${pattern[@]}" --threads "$THREADS" --random-seed 12345 \
     > "$d/run.log" 2>&1 || { echo "$c: FAILED (see $d/run.log)"; continue; }
  echo "$c: done in $(( $(date +%s) - start )) s"
  echo "$(( $(date +%s) - start ))" > "$d/seconds.txt"
done
