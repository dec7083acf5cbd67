"""Moved to :mod:`tokenry.flows.watermarks`; kept while ``client_admin.py`` imports it from here."""

from tokenry.flows.watermarks import Watermarks

__all__ = ["Watermarks"]
