"""Benchmarks that run xft end to end: the cross-lingual transfer suite (`xft bench transfer`)."""
