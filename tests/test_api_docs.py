"""Every public callable of the library has a docstring: each function, class and public method
(and ``__call__``) named in the ``__all__`` of ``semcom``'s subpackages and modules (the
README's Python API promises that each docstring states its tensor shapes and units; one that
is missing states nothing)."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
import types
from collections.abc import Iterator

import pytest
from torch import nn

import semcom


def _public_modules() -> Iterator[types.ModuleType]:
    """``semcom.X`` for every X of :data:`semcom.SUBMODULES`, and the modules of those
    packages that declare an ``__all__`` (``semcom.codecs.jscc``, ``semcom.eval.stats``, ...)."""
    for name in semcom.SUBMODULES:
        mod = importlib.import_module(f"semcom.{name}")
        yield mod
        for info in pkgutil.iter_modules(getattr(mod, "__path__", [])):
            if not info.name.startswith("_"):
                sub = importlib.import_module(f"{mod.__name__}.{info.name}")
                if hasattr(sub, "__all__"):
                    yield sub


def _has_doc(obj: object) -> bool:
    doc = getattr(obj, "__doc__", None)
    return isinstance(doc, str) and bool(doc.strip())


def _class_doc_missing(cls: type) -> bool:
    """No docstring of its own, or only the signature a dataclass writes in its place."""
    doc = cls.__dict__.get("__doc__")
    if not isinstance(doc, str) or not doc.strip():
        return True
    return dataclasses.is_dataclass(cls) and doc.startswith(f"{cls.__name__}(")


def _method_doc_missing(cls: type, name: str) -> bool:
    """The method (or property) ``name`` of ``cls`` has no docstring: neither its own nor that
    of the same method of a semcom base class it overrides (a docstring inherited from torch,
    e.g. ``nn.Module.forward``'s, says nothing about this method's tensors)."""
    for klass in cls.__mro__:
        if name not in klass.__dict__:
            continue
        attr = klass.__dict__[name]
        fn = attr.fget if isinstance(attr, property) else getattr(attr, "__func__", attr)
        if _has_doc(fn):
            return not klass.__module__.startswith("semcom")
    return True


def _methods(cls: type) -> list[str]:
    """The public methods and properties ``cls`` defines (``__call__`` included)."""
    out = []
    for name, attr in vars(cls).items():
        if name.startswith("_") and name != "__call__":
            continue
        if inspect.isfunction(attr) or isinstance(attr, property | classmethod | staticmethod):
            out.append(name)
    return out


def _undocumented(module: types.ModuleType) -> list[str]:
    """``module.name`` (``module.Class.method``) of every public callable of ``module``'s
    ``__all__`` without a docstring. Constants and type aliases are left out (they cannot hold
    one)."""
    bad = []
    for name in module.__all__:
        obj = getattr(module, name)
        where = f"{module.__name__}.{name}"
        if inspect.isclass(obj):
            if _class_doc_missing(obj):
                bad.append(where)
            bad += [f"{where}.{m}" for m in _methods(obj) if _method_doc_missing(obj, m)]
        elif inspect.isroutine(obj) and not _has_doc(obj):
            bad.append(where)
    return bad


MODULES = list(_public_modules())


def test_every_public_module_declares_its_api() -> None:
    # what the walk covers: every subpackage of the package (each must declare an __all__),
    # and the modules in them that declare one; a module without one (eval.plot, eval.bench,
    # channels.models, ...) is reached only through its package's __all__
    names = {m.__name__ for m in MODULES}
    assert {f"semcom.{n}" for n in semcom.SUBMODULES} <= names
    assert {"semcom.codecs.jscc", "semcom.diffusion.samplers", "semcom.eval.stats"} <= names
    assert [m.__name__ for m in MODULES if not hasattr(m, "__all__")] == []
    assert sum(len(m.__all__) for m in MODULES) >= 200


def test_every_module_with_an_api_is_a_submodule() -> None:
    """A module of the package that declares an ``__all__`` (``semcom.names``, ...) is in
    :data:`semcom.SUBMODULES`: reachable as ``semcom.X`` and walked by these tests."""
    declared = {
        info.name
        for info in pkgutil.iter_modules(semcom.__path__)
        if not info.name.startswith("_")
        and hasattr(importlib.import_module(f"semcom.{info.name}"), "__all__")
    }
    assert "names" in declared
    assert sorted(declared - set(semcom.SUBMODULES)) == []


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_public_callables_have_docstrings(module: types.ModuleType) -> None:
    assert _undocumented(module) == []


def test_the_check_catches_a_missing_docstring() -> None:
    class Base(nn.Module):
        """A base."""

        def step(self, x):
            """What ``step`` does to ``x`` [B]."""
            return x

    class Child(Base):
        """A child."""

        def step(self, x):  # inherits Base.step's docstring: documented
            return x

        def forward(self, x):  # only nn.Module's generic docstring: not documented
            return x

        @property
        def size(self) -> int:
            return 1

        def __call__(self, x):
            return x

        def _private(self):
            return None

    @dataclasses.dataclass
    class Record:
        value: int

    def documented() -> None:
        """Does nothing."""

    def bare() -> None:
        pass

    mod = types.ModuleType("toy")
    for obj in (Base, Child, Record, documented, bare):
        setattr(mod, obj.__name__, obj)
    mod.CONSTANT = 3
    mod.__all__ = ["Base", "Child", "Record", "documented", "bare", "CONSTANT"]
    Base.__module__ = Child.__module__ = "semcom.toy"
    assert _undocumented(mod) == [
        "toy.Child.forward",
        "toy.Child.size",
        "toy.Child.__call__",
        "toy.Record",
        "toy.bare",
    ]
