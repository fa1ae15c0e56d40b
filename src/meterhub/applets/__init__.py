"""The hub's applets. Importing this package registers their classes with the
card's code registry (no code is ever loaded from package bytes)."""

from . import aggregation, billing, demand_response, export, profiling, settlement

__all__ = ["aggregation", "billing", "demand_response", "export", "profiling", "settlement"]
