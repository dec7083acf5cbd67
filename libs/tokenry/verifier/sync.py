"""Deprecated: ``tokenry.verifier.sync`` moved; import from tokenry.verifier.

Kept for one release (see :mod:`tokenry.verifier._deprecated`).
"""

from tokenry.verifier._deprecated import forward

__getattr__ = forward(
    __name__,
    "tokenry.verifier._feed",
    "tokenry.verifier._snapshot",
    public="tokenry.verifier",
)
