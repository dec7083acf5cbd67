"""Deprecated: ``tokenry.verifier.keys`` moved; import from tokenry.jose.

Kept for one release (see :mod:`tokenry.verifier._deprecated`).
"""

from tokenry.verifier._deprecated import forward

__getattr__ = forward(
    __name__,
    "tokenry.jose._keys",
    public="tokenry.jose",
)
