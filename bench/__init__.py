"""A benchmark of revcov against minimal baselines measured in the same run.

Run it with `python -m bench run --size smoke|small|full`; bench/README.md describes what it
measures and records results.
"""
