"""Old names that still resolve for one release, with a DeprecationWarning (issue 12).

A module that renamed a public name keeps the old one importable::

    __getattr__ = renamed(__name__, {"OldName": ("NewName", NewName)})
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["renamed"]


def renamed(module: str, names: Mapping[str, tuple[str, Any]]) -> Callable[[str], Any]:
    """A module ``__getattr__`` resolving each old name to its new object, with a warning.

    Args:
        module: the module's ``__name__`` (for the messages).
        names: old name -> (where the name lives now, the object).

    Returns ``Any`` so that type checkers accept code still using an old name.
    """

    def resolve(name: str) -> Any:
        found = names.get(name)
        if found is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        new, value = found
        warnings.warn(f"{module}.{name} is deprecated; use {new}", DeprecationWarning, stacklevel=2)
        return value

    return resolve
