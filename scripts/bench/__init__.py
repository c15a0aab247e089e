"""The benchmark harness: broker, databases and worker processes started for a run, a publisher, a
reader that sees rows become visible, and the pieces of the central benchmark (scripts/bench_central.py).

Benchmarks never assert times: they print what they measured, side by side in one run, so a reader
compares ratios (this machine and CI runners are noisy; absolute numbers drift). Statistics,
machine facts and table printing shared with the other benchmarks are in scripts/bench_common.py.
"""
