"""Deprecated: ``tokenry.verifier.client`` moved; import from tokenry.client.

Kept for one release (see :mod:`tokenry.verifier._deprecated`).
"""

from tokenry.verifier._deprecated import forward

__getattr__ = forward(
    __name__,
    "tokenry.client._auth",
    "tokenry.client._fetchers",
    "tokenry.client._refresh",
    "tokenry.client._sources",
    "tokenry.client._interceptors",
    public="tokenry.client",
)
