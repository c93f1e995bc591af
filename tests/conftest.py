"""Shared fixtures. Thread settings go first: MXNet reads OMP_NUM_THREADS once, at import."""

from fashionai.runtime import configure_threads

configure_threads()
