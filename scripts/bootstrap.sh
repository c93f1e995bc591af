#!/usr/bin/env bash
# Create or repair the project's virtual environment (.venv, or $VENV) with the pinned set.
# A no-op when the venv is complete and was built from the current constraints.txt and setup.py;
# a broken or partial venv (failed install, deleted files) is detected and rebuilt from scratch.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
want=$(cat constraints.txt setup.py | sha256sum | cut -d' ' -f1)
stamp="$VENV/.fashionai-installed"

healthy() {
  [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] &&
    "$VENV/bin/python" -c "import mxnet, gluoncv, cv2, sklearn, pytest, fashionai" >/dev/null 2>&1
}

if healthy; then
  exit 0
fi
echo "bootstrap: building $VENV with the pinned dependencies (about a minute)" >&2
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade "pip<25" 2>/dev/null || true
"$VENV/bin/python" -m pip install -q -c constraints.txt -e ".[test,onnx]"
"$VENV/bin/python" -c "import mxnet, gluoncv, cv2, sklearn, pytest, fashionai" || {
  echo "bootstrap: the environment does not import; see the errors above" >&2; exit 1; }
echo "$want" > "$stamp"
