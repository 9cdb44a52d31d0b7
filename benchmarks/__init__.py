"""localgrad's benchmark scripts (bench_<family>.py), run as scripts
(`python benchmarks/bench_dfa.py`) or through `localgrad bench <family>`.

The wheel ships this folder as the package localgrad.benchmarks (setup.py maps
it), so that an installed `localgrad bench` finds the scripts; a script still
imports its helpers as the top-level module `_timing`, from its own folder.
"""
