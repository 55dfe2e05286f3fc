"""Names that moved to another module: importing one from its old home says where it went.

A module lists its moved names and sets ``__getattr__ = moved(__name__, {...})``
(PEP 562). Python calls it only for names the module does not have, so it costs
nothing otherwise, and it imports nothing (the new home may sit in a higher layer).
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["moved"]


def moved(module: str, new_homes: dict[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` raising ``ImportError`` that names the new home of a moved name.

    Args:
        module: the old home's ``__name__``.
        new_homes: ``{name: new module}`` for each name that moved.

    Example:
        >>> getattr_ = moved("old", {"f": "new"})
        >>> getattr_("f")
        Traceback (most recent call last):
        ...
        ImportError: f moved from old to new: from new import f
    """
    def __getattr__(name: str):
        if name in new_homes:
            home = new_homes[name]
            raise ImportError(f"{name} moved from {module} to {home}: from {home} import {name}", name=name)
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    return __getattr__
