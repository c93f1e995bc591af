#!/usr/bin/env bash
# Create or repair the project's virtual environment (.venv, or $VENV) with the pinned set.
# A no-op when the venv is complete and was built from the current constraints.txt and setup.py;
# a broken or partial venv (failed install, deleted files) is detected and rebuilt from scratch.
#
# The MXNet build is a choice (MXNET_BUILD=auto|cpu|cu112|cu117, default auto: a CUDA build where
# nvidia-smi lists GPUs it has kernels for, else the CPU build; python3 -m fashionai.core.gpu
# decides). The choice is kept in the venv, so a rebuild after constraints.txt or setup.py change
# installs the same build again, never the CPU one over a CUDA one. A CUDA build whose libraries
# are missing (libcudnn.so.8, ...) is said as such: nothing is deleted for it.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
stamp="$VENV/.fashionai-installed"
kept="$VENV/.fashionai-mxnet-build"
requested=${MXNET_BUILD:-$(cat "$kept" 2>/dev/null || echo auto)}
choice=$(PYTHONPATH=. "$PYTHON" -S -m fashionai.core.gpu choose-build "$requested") || exit 2
build=${choice%%$'\t'*}
want="$(cat constraints.txt setup.py | sha256sum | cut -d' ' -f1) $build"

imports() {
  "$VENV/bin/python" -c "import mxnet, gluoncv, cv2, sklearn, pytest, xdist, openvino, fashionai" 2>&1
}

# A CUDA build that does not load for want of a shared library: say which, keep the venv.
missing_library() {
  local libs
  libs=$(grep -o 'lib[A-Za-z0-9_+-]*\.so[.0-9]*: cannot open shared object file' <<<"$1" | cut -d: -f1 | sort -u)
  [ -n "$libs" ] && [ "$build" != cpu ] || return 1
  echo "bootstrap: mxnet-$build is installed in $VENV but cannot load $(tr '\n' ' ' <<<"$libs")(CUDA 11.x and" \
       "cuDNN 8 runtime libraries): install them and add their folder to LD_LIBRARY_PATH, or use the CPU" \
       "build: MXNET_BUILD=cpu scripts/bootstrap.sh. \`fashionai doctor\` lists what is found." >&2
}

if [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  if out=$(imports); then exit 0; fi
  missing_library "$out" && exit 1
fi
echo "bootstrap: building $VENV with the pinned dependencies and the $build MXNet build (${choice#*$'\t'})" >&2
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
echo "$build" > "$kept"
"$VENV/bin/python" -m pip install -q --upgrade "pip<25" 2>/dev/null || true
"$VENV/bin/python" -m pip install -q -c constraints.txt -e ".[test,onnx,openvino,$build]"
if ! out=$(imports); then
  missing_library "$out" && exit 1
  echo "$out" >&2
  echo "bootstrap: the environment does not import; see the errors above" >&2
  exit 1
fi
echo "$want" > "$stamp"
