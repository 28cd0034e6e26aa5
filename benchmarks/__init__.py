"""Benchmarks: valar_pandas against a faithful re-implementation of Valar's at-scale recipe.

Run ``python -m benchmarks --help`` from the repository root. Every figure is measured in
child processes spawned one after another against an emulator in its own process, and is
reported next to a baseline measured in the same invocation (see ``docs/performance.md``).
"""
