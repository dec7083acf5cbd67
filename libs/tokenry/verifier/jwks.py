"""Deprecated: ``tokenry.verifier.jwks`` moved; import from tokenry.jose.

Kept for one release (see :mod:`tokenry.verifier._deprecated`).
"""

from tokenry.verifier._deprecated import forward

__getattr__ = forward(
    __name__,
    "tokenry.jose._jwks_cache",
    "tokenry.verifier._jwks",
    public="tokenry.jose (JwksCache) or tokenry.verifier",
)
