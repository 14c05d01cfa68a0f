"""What a run captures at start: code, environment, data fingerprints, seeds.

Each submodule is a pure function of its inputs (or a thin reader at the edge)
and can be used on its own.
"""
