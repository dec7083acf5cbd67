"""Deprecated: ``tokenry.verifier.jose`` moved; import from tokenry.jose.

Kept for one release (see :mod:`tokenry.verifier._deprecated`).
"""

from tokenry.verifier._deprecated import forward

__getattr__ = forward(
    __name__,
    "tokenry.jose._decoder",
    "tokenry.jose._claims",
    "tokenry.jose._json",
    public="tokenry.jose",
)
