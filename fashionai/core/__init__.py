"""Layer 1, `core`: what every stage shares and nothing else needs.

Tasks and their classes, reading the competition's CSVs, process settings made before MXNet is
imported, CPU facts, device contexts, the official metric (pure numpy: training validates with it
every epoch, so it sits below training rather than in `scoring`), the one atomic writer, a run's
typed description (`RunInfo`) and the plots. Modules here import only from each other.
"""
