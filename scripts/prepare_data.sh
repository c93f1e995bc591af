#!/usr/bin/env bash
# Prepare the FashionAI data for training: per-task train/val class folders + manifest.
# Usage: scripts/prepare_data.sh [DATA_ROOT] [OUT] [more `fashionai prepare` flags]
# Defaults: DATA_ROOT=data, OUT=data/prepared (relative to where you run it, usually the repo root).
# Example: scripts/prepare_data.sh data data/prepared --overwrite -j 8
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}
DATA=${1:-data}
OUT=${2:-data/prepared}
shift $(( $# < 2 ? $# : 2 ))
VENV="$VENV" "$ROOT/scripts/bootstrap.sh"
exec "$VENV/bin/python" -m fashionai prepare --data "$DATA" --out "$OUT" "$@"
