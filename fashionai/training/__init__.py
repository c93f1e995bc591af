"""Layer 4, `training`: one run, from a `TrainConfig` to a run directory.

Config, the epoch loop (one loss step for every head), loaders, the run directory (checkpoints,
metrics, resume), `fit`, cached-feature head training, multi-task nets, distributed jobs.
Imports from `core`, `data` and `fashionai.model` (layer 3, shared with inference).
"""
