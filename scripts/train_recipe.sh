#!/usr/bin/env bash
# The default model's whole recipe on one machine (2 CPU cores are enough; a GPU is used when present):
# a 3-D U-Net (about 1 h on 2 cores) and the 2.5-D network (about 25-45 min), then one combined model folder.
#
#   bash scripts/train_recipe.sh OUT [SESSION_SECONDS] [HOLDOUT]
#
# OUT receives runs/3d, runs/2p5d and, once both are complete, models/<id>-3d, models/<id>-2p5d and
# models/<id> (the combined model: mean probability, threshold 0.4, min_peak 0.8, as mslesion-flair-v6,
# whose parts were made with these two commands).
# SESSION_SECONDS (default: no limit) ends this call with a checkpoint after that long in each unfinished run;
# run the same command again to resume (exit status 0 and "unfinished" on the last line).
# HOLDOUT (default: none) leaves a subject out of both runs: one leave-one-subject-out fold of the recipe;
# its held-out scans are then predicted (the mean of the two parts, as the combined model; kept under
# .devdata/preds/<id>, and each part's own map under .devdata/preds/<id>~<part> for `holdout_eval.py combine
# --weights`) and scored on a grid of thresholds and min_peak values around the shipped 0.4 / 0.8
# (OUT/holdout_score.json); `holdout_eval.py pool` takes several folds' files to choose them by cross-validation.
# DATA (default .devdata/train_v4, from scripts/prepare_training_data.py) and PYTHON may be set.
set -eu
OUT=${1:?usage: train_recipe.sh OUT [SESSION_SECONDS] [HOLDOUT]}
SESSION=${2:-0}
HOLDOUT=${3:-}
DATA=${DATA:-.devdata/train_v4}
PY=${PYTHON:-.venv/bin/python}
ID=$(basename "$OUT")
GRID_THRESHOLDS="0.3 0.4 0.5"
GRID_PEAKS="0.5 0.6 0.7 0.8 0.9"

EXTRA=()
[ "$SESSION" != 0 ] && EXTRA+=(--session-seconds "$SESSION")
[ -n "$HOLDOUT" ] && EXTRA+=(--holdout "$HOLDOUT" --no-holdout-predict)
SHARED=(--data "$DATA" --lesion-sampling component --synthetic-lesions 0.3 --tissue-bump 0.3 --small-lesion-weight 4)

complete() { [ -f "$1/train_summary.json" ] && grep -q '"complete": true' "$1/train_summary.json"; }

mkdir -p "$OUT/runs" "$OUT/models"
if ! complete "$OUT/runs/3d"; then
  "$PY" scripts/train.py "${SHARED[@]}" ${EXTRA[@]+"${EXTRA[@]}"} --arch 3d --batch 2 --patch 80 80 80 \
      --iterations 4150 --out "$OUT/runs/3d"
fi
if complete "$OUT/runs/3d" && ! complete "$OUT/runs/2p5d"; then
  "$PY" scripts/train.py "${SHARED[@]}" ${EXTRA[@]+"${EXTRA[@]}"} --arch 2.5d --batch 12 --base 24 --levels 5 \
      --patch 5 160 160 --iterations 1300 --max-seconds 3000 --infer-window 256 256 256 --out "$OUT/runs/2p5d"
fi
if ! complete "$OUT/runs/3d" || ! complete "$OUT/runs/2p5d"; then
  echo "unfinished: run the same command again to resume ($OUT/runs)"
  exit 0
fi
"$PY" scripts/train.py package "$OUT/runs/3d" "$OUT/models/$ID-3d" "$ID-3d" --no-auto --cpu-window 112 112 112
"$PY" scripts/train.py package "$OUT/runs/2p5d" "$OUT/models/$ID-2p5d" "$ID-2p5d" --no-auto --cpu-window 256 256 256
"$PY" scripts/train.py combine "$OUT/models/$ID" "$ID" --parts "$ID-3d" "$ID-2p5d" --threshold 0.4 --min-peak 0.8 --no-auto
if [ -n "$HOLDOUT" ]; then   # the fold's own figure: its held-out cases, as the combined model predicts them
  "$PY" scripts/holdout_eval.py predict --tag "$ID" --model "$OUT/models/$ID-3d" "$OUT/models/$ID-2p5d" \
      --subject "$HOLDOUT" --train-data "$DATA" --keep-parts
  "$PY" scripts/holdout_eval.py score --tag "$ID" --thresholds $GRID_THRESHOLDS --min-peak $GRID_PEAKS \
      --train-data "$DATA" --json "$OUT/holdout_score.json"
fi
echo "complete: $OUT/models/$ID"
