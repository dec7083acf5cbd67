"""Moved to :mod:`tokenry.flows.deps`; kept while ``exchange_flow.py`` imports it from here."""

from tokenry.flows.deps import IssuerDeps, TokenRequest, token_format

__all__ = ["IssuerDeps", "TokenRequest", "token_format"]
