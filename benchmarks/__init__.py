"""Benchmarks that print ratios against a baseline run in the same invocation."""
