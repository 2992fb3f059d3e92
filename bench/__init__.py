"""Benchmarks and soak runs; run them from the repository root with ``python -m bench.<name>``."""
