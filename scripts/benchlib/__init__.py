"""The benchmark harness behind `scripts/bench`: the raw engine, the service and Tesseract on
the same pages and the same machine, scored against `../shared/eval` (see docs/benchmarks.md).
"""
