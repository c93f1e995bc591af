#!/usr/bin/env bash
# All 8 tasks from their best runs to one validated submission (submit validates before writing).
#
#   scripts/make_submission.sh [RUNS_ROOT] [QUESTIONS] [OUT_DIR] [-- extra submit flags]
#   e.g. scripts/make_submission.sh runs data/rank/Tests/question.csv submissions -- --tta flip
#
# For each task the run is RUNS_ROOT/<task>/best when that exists (a link you point at the run you
# chose), else the newest RUNS_ROOT/<task>/*/ holding best.params. Set ANSWERS=FILE (ground truth in
# label format, e.g. the demo's rank/Tests/answers.csv) to print the official mAP of the result.
set -euo pipefail
cd "$(dirname "$0")/.."
runs_root=${1:-runs}
questions=${2:-data/rank/Tests/question.csv}
out=${3:-submissions}
shift $(( $# < 3 ? $# : 3 ))
[ "${1:-}" = "--" ] && shift
PY=${PY:-.venv/bin/python}

tasks=$("$PY" -c "from fashionai.core.tasks import TASK_NAMES; print(' '.join(TASK_NAMES))")
runs=()
for task in $tasks; do
  if [ -d "$runs_root/$task/best" ]; then
    runs+=("$runs_root/$task/best")
    continue
  fi
  newest=$(ls -1td "$runs_root/$task"/*/ 2>/dev/null | while read -r d; do
    [ -f "$d/best.params" ] && { echo "${d%/}"; break; }; done || true)
  if [ -z "$newest" ]; then
    echo "make_submission: no run with best.params under $runs_root/$task/ (train it first)" >&2
    exit 1
  fi
  runs+=("$newest")
done

echo "make_submission: ${runs[*]}" >&2
"$PY" -m fashionai submit --runs "${runs[@]}" --questions "$questions" --out "$out" "$@"
"$PY" -m fashionai check-submission "$out/submission.csv" --questions "$questions"
if [ -n "${ANSWERS:-}" ]; then
  "$PY" -m fashionai evaluate --submission "$out/submission.csv" --answers "$ANSWERS"
fi
