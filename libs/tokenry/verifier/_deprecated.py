"""Old import paths, kept for one release: a module-level ``__getattr__`` that warns.

``tokenry.verifier`` had 16 public modules; its internals are private now (httpx style) and the
JOSE core and the caller side have their own packages (``tokenry.jose``, ``tokenry.client``).
Each old module is a shim built by :func:`forward`: any name it used to offer still resolves,
with a DeprecationWarning naming the new home.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from typing import Any

__all__ = ["forward"]


def forward(old: str, *homes: str, public: str) -> Callable[[str], Any]:
    """A module ``__getattr__`` for the shim ``old``: look the name up in ``homes`` in order.

    Args:
        old: the shim's module name.
        homes: the modules now holding its names.
        public: where users should import from, quoted in the warning.
    """

    def module_getattr(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        for home in homes:
            module = importlib.import_module(home)
            if hasattr(module, name):
                warnings.warn(
                    f"{old}.{name} is deprecated and will be removed in the next release; "
                    f"import it from {public}",
                    DeprecationWarning,
                    stacklevel=2,
                )
                return getattr(module, name)
        raise AttributeError(f"module {old!r} has no attribute {name!r}")

    return module_getattr
