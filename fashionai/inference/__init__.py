"""Layer 5, `inference`: a trained run's net in a given precision, its predictions, its export.

Imports from `core`, `data` and `fashionai.model`; never from `training` (a run directory is read
through `core.runinfo.RunInfo`, not through the training config).
"""
