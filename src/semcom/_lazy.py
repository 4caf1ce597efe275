"""Package attributes imported on first use (PEP 562): a package whose modules import torch
names them here instead of importing them, so that importing the package, or one of its light
modules (``semcom.channels.cbr``, ``semcom.eval.table``, ``semcom.train.cli``), does not import
torch. ``semcom --help`` and the results commands run without it."""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any


class _Package(types.ModuleType):
    """A package one of whose lazy names is also the name of the submodule that defines it
    (``semcom.channels.equalize``, the function, of the module ``equalize``): importing the
    submodule binds the package's attribute to the module, which then hides the name from
    ``__getattr__``; here it binds to the name, as the eager ``from .equalize import
    equalize`` did."""

    _shadowed: frozenset[str] = frozenset()

    def __setattr__(self, name: str, value: Any) -> None:
        if (
            name in self._shadowed
            and isinstance(value, types.ModuleType)
            and value.__name__ == f"{self.__name__}.{name}"
        ):
            value = getattr(value, name)
        super().__setattr__(name, value)


def lazy_attributes(
    package: str, exports: Mapping[str, Sequence[str]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` of ``package`` that import the names ``exports`` lists
    (submodule -> names, e.g. ``{"cbr": ("format_cbr", ...)}``) from their submodule when first
    read, and keep them in the package; the submodules themselves (``package.cbr``) load the
    same way."""
    where = {name: module for module, names in exports.items() for name in names}
    shadowed = frozenset(name for name, module in where.items() if name == module)
    if shadowed:
        mod = sys.modules[package]
        mod.__class__ = _Package
        setattr(mod, "_shadowed", shadowed)  # noqa: B010 (the class's attribute, per package)

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is not None:
            value = getattr(importlib.import_module(f"{package}.{module}"), name)
        elif name in exports:
            value = importlib.import_module(f"{package}.{name}")
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *where, *exports})

    return __getattr__, __dir__
