#!/usr/bin/env bash
# Train one task: `fashionai train --task TASK` plus any extra train flags (`fashionai train --help`).
#
#   scripts/train_task.sh TASK [extra fashionai train flags]
#   e.g. scripts/train_task.sh skirt_length_labels --num-gpus 2 --name r50
#        scripts/train_task.sh collar_design_labels --preset demo --prepared demo/prepared --epochs 5
#
# Runs from the repository root, so relative paths in the flags are relative to it. The run goes to
# OUT/TASK/NAME (--out, default runs; --name, default <model>_<px>px_<time>). PY picks the
# interpreter (default .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}

usage() {
  echo "usage: scripts/train_task.sh TASK [extra fashionai train flags]"
  echo "  TASK: one of $("$PY" -c "from fashionai.core.tasks import TASK_NAMES; print(' '.join(TASK_NAMES))" 2>/dev/null || echo "the 8 task names")"
}
case "${1:-}" in
  -h|--help) usage; exit 0 ;;
  ""|-*) usage >&2; exit 2 ;;
esac
task=$1
shift
exec "$PY" -m fashionai train --task "$task" "$@"
