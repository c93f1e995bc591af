#!/usr/bin/env bash
# Data-parallel training of one task over several processes / hosts with MXNet's ps-lite kvstore.
#
#   scripts/train_distributed.sh WORKERS TASK [train flags]           # every process on this host
#   HOSTS=hosts.txt scripts/train_distributed.sh WORKERS TASK [...]   # ssh to the hosts listed
#
# The job is supervised: if any process dies, the rest are stopped and the script exits non-zero;
# the same line with --resume RUN_DIR continues the run.
#
# Each worker trains on its 1/WORKERS shard of the images with --batch-size per device; the gradients
# are summed over all workers every step (dist_sync), so the global batch is batch x devices x WORKERS.
# The learning rate is not changed for you: with the epochs unchanged, scale it linearly
# (--lr x WORKERS, with --warmup-epochs). Rank 0 alone writes the run directory; on several hosts
# the prepared data and --out must be on a shared filesystem (or the same path on every host).
# One host with several GPUs needs none of this: `fashionai train --devices gpu:0,1,2,3`.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 2 ]; then
  echo "usage: $0 WORKERS TASK [fashionai train flags]" >&2
  exit 2
fi
workers=$1 task=$2
shift 2
PY=${PY:-.venv/bin/python}
SERVERS=${SERVERS:-1}
launcher=(--launcher local)
if [ -n "${HOSTS:-}" ]; then
  launcher=(--launcher ssh -H "$HOSTS")
  [ -n "${MXNET_HOME:-}" ] && launcher+=(--env MXNET_HOME)
fi
# threads: each process takes its share of its own host's cores (fashionai launch says how many share)
exec "$PY" -m fashionai launch -n "$workers" -s "$SERVERS" "${launcher[@]}" -- \
  "$PY" -m fashionai train --task "$task" --kvstore dist_sync "$@"
