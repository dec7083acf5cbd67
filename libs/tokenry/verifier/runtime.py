"""Deprecated: ``tokenry.verifier.runtime`` moved; import from tokenry.verifier.

Kept for one release (see :mod:`tokenry.verifier._deprecated`).
"""

from tokenry.verifier._deprecated import forward

__getattr__ = forward(
    __name__,
    "tokenry.verifier._runtime",
    public="tokenry.verifier",
)
