"""Layer 6, `scoring`: submission files (build, check, write, score) and score tables.

Pure file and numpy work on probabilities: imports only from `core`.
"""
