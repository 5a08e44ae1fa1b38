"""Inference: the router (one base, many adapters, rows routed per language) and the HTTP server around it."""

from xft_core.inference.packages import RouterStats, find_packages
from xft_core.inference.router import BASE, Router

__all__ = ["BASE", "Router", "RouterStats", "find_packages"]
