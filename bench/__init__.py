"""Benchmarks: ``make bench``, or ``python -m bench.run`` from the repository's root (see
bench/README.md). Not part of the installed package."""
