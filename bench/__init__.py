"""The load harness: `make bench` (or `python -m bench`) measures chat beside the Flask reference and bare servers.

See docs/performance.md for what each scenario does and the latest figures.
"""
