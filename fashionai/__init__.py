"""fashionai: an MXNet Gluon pipeline for the FashionAI clothing-attribute challenge.

Importing the package does not import MXNet: `fashionai.core.runtime.configure_threads` must run first
so that OpenMP picks up every core (MXNet reads the thread count once, at import).
"""

__version__ = "0.1.0"
