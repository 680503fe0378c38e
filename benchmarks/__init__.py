"""Benchmarks: ratios measured side by side in one run. Results go in BENCHMARKS.md."""
