"""Process-wide settings that must be in place before MXNet is imported."""

from __future__ import annotations

import logging
import os
import sys

from fashionai.core.cpu import usable_cores

log = logging.getLogger(__name__)

# MXNet starts OpenMP with half the processors by default (1 thread on a 2-core machine); setting
# OMP_NUM_THREADS to the core count before `import mxnet` roughly doubles CPU throughput.
THREAD_VARIABLES = ("OMP_NUM_THREADS",)


def configure_threads(env: dict[str, str] | None = None) -> dict[str, str]:
    """Set OMP_NUM_THREADS to the usable core count unless the user set it; return what applies.

    Must run before the first `import mxnet` in the process: MXNet reads it once, at import.
    """
    env = os.environ if env is None else env
    cores = usable_cores()
    resolved = {}
    for name in THREAD_VARIABLES:
        if name not in env:
            env[name] = str(cores)
        resolved[name] = env[name]
    return resolved


def mxnet_already_imported() -> bool:
    """True when MXNet was imported before the thread settings could take effect."""
    return "mxnet" in sys.modules
