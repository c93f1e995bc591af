"""Layer 7, `pipeline`: what joins the layers: evaluate a run on its val split, choose a run's
precision, compare TTA modes and precisions, make a submission from runs, the demo."""
