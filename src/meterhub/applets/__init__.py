"""The hub's applets. Importing this package registers their classes with the
card's code registry (no code is ever loaded from package bytes)."""

from . import aggregation, billing, export, profiling, settlement

__all__ = ["aggregation", "billing", "export", "profiling", "settlement"]
