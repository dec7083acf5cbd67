"""Moved to :mod:`tokenry.flows.introspection_cache` (the gateway runs introspection in process
too); kept as a re-export for the introspector's invalidation and its tests."""

from tokenry.flows.introspection_cache import Positive, PositiveCache

__all__ = ["Positive", "PositiveCache"]
