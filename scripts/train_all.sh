#!/usr/bin/env bash
# Train the 8 tasks in turn (like the Gluon FashionAI tutorial's benchmark.sh), then print one line
# per task with its best val mAP (the official FashionAI AP, from the run's checkpoint.json).
#
#   scripts/train_all.sh [extra fashionai train flags, given to every task]
#   e.g. scripts/train_all.sh --num-gpus 2
#        NAME=demo scripts/train_all.sh --preset demo --prepared demo/prepared --out demo/runs
#
# Every task's run is OUT/<task>/NAME: NAME (environment, default the start time) is passed as
# --name to all tasks, OUT is --out (default runs). TASKS (environment, space-separated) trains a
# subset, in its order; default all 8. Stops at the first task that fails, naming it; the runs
# before it are kept. PY picks the interpreter (default .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
NAME=${NAME:-$(date +%Y%m%d-%H%M%S)}

tasks=${TASKS:-$("$PY" -c "from fashionai.core.tasks import TASK_NAMES; print(' '.join(TASK_NAMES))")}
for task in $tasks; do
  echo "train_all: $task (run name $NAME)" >&2
  scripts/train_task.sh "$task" --name "$NAME" "$@" || {
    code=$?
    echo "train_all: $task failed (exit status $code); stopping, the tasks after it were not trained" >&2
    exit "$code"
  }
done

# The run directories, resolved the way `fashionai train` resolves them (flags, -c FILE, --preset).
"$PY" - "$NAME" "$tasks" "$@" <<'PYTHON'
import json
import math
import sys
from pathlib import Path

from fashionai.cli import build_parser, train_config

name, tasks, flags = sys.argv[1], sys.argv[2].split(), sys.argv[3:]
print(f"train_all: best val mAP (official AP) per task, run name {name}")
for task in tasks:
    config = train_config(build_parser().parse_args(["train", "--task", task, "--name", name, *flags]))
    run = Path(config.resume) if config.resume else Path(config.out) / task / config.name
    state = json.loads((run / "checkpoint.json").read_text())
    score = state["best_score"]
    shown = "n/a" if score is None or math.isnan(score) else f"{score:.4f}"
    print(f"{task:24s} {shown:>7s} at epoch {state['best_epoch']:>3d}  {run}")
PYTHON
