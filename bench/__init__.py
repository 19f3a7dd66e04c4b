"""Benchmarks; `python -m bench [name]` runs them and writes bench/results/*.json."""
