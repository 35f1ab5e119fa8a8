"""Benchmarks that print figures: `python -m bench.store` and friends. Tests never assert timings."""
