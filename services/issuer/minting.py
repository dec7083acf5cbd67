"""Moved to :mod:`tokenry.flows.minting`; kept while ``exchange_flow.py`` imports it from here."""

from tokenry.flows.minting import JWT, OPAQUE, Minter, SigningKeys, TokenResult, opaque_record

__all__ = ["JWT", "OPAQUE", "Minter", "SigningKeys", "TokenResult", "opaque_record"]
