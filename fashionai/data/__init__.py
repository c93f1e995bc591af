"""Layer 2, `data`: from files on disk to batches of tensors.

Demo data, `prepare` (CSV -> class folders + manifest), the manifest's readers, image transforms
and test-time views, folder and RecordIO loaders, packing. Imports only from `core`.
"""
