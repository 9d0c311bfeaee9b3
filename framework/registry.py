"""Find producer and consumer subclasses by name.

A concrete subclass of :class:`~framework.producer.base.ProducerABC` or
:class:`~framework.consumer.base.ConsumerSparkABC` registers itself under its
``name`` when its class body runs (in ``__init_subclass__``). The commands then
import, in this order, the shipped ``apps`` package, the modules named on the
command line or in ``PIPELINE_PLUGINS``-style options, and every module
advertised under the ``pipeline.producers`` / ``pipeline.consumers`` entry-point
groups of installed distributions, so a user's own subclasses are found without
editing ``cmd/``.
"""
from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Generic, Iterable, TypeVar

from framework.errors import RegistryError

T = TypeVar("T")


class Registry(Generic[T]):
    """Classes of one kind (``producer`` or ``consumer``) by name."""

    def __init__(self, kind: str, entry_point_group: str) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._classes: dict[str, type[T]] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str, cls: type[T]) -> None:
        """Register ``cls`` under ``name``; a second, different class with the same name is an error."""
        current = self._classes.get(name)
        if current is not None and current.__qualname__ != cls.__qualname__ or (
                current is not None and current.__module__ != cls.__module__):
            raise RegistryError(
                f"Two {self.kind}s are named {name!r}: {_where(current)} and {_where(cls)}; "
                "give one of them another `name`.")
        self._classes[name] = cls

    def unregister(self, name: str) -> None:
        self._classes.pop(name, None)

    def alias(self, alias: str, name: str) -> None:
        """Let ``alias`` find the class registered as ``name`` too (e.g. an entry point's name); not listed."""
        if alias in self._classes and alias != name:
            raise RegistryError(f"Cannot make {alias!r} another name of the {self.kind} {name!r}: a {self.kind} "
                                f"is named {alias!r} already.")
        self._aliases[alias] = name

    def get(self, name: str) -> type[T]:
        """The class registered as ``name`` (or an alias of it); :class:`RegistryError` lists the available names."""
        try:
            return self._classes[self._aliases.get(name, name) if name not in self._classes else name]
        except KeyError:
            raise RegistryError(
                f"Unknown {self.kind} {name!r}; available: {', '.join(self.names()) or 'none'}.") from None

    def names(self) -> list[str]:
        return sorted(self._classes)

    def items(self) -> list[tuple[str, type[T]]]:
        return sorted(self._classes.items())

    def __contains__(self, name: object) -> bool:
        return name in self._classes or name in self._aliases

    def discover(self, modules: Iterable[str] = (), builtin: str = "apps") -> None:
        """Import ``builtin``, then ``modules``, then the entry-point group's modules."""
        for module in [builtin, *[m for m in modules if m]]:
            load_module(module)
        for ep in entry_points(group=self.entry_point_group):
            try:
                ep.load()
            except Exception as exc:
                raise RegistryError(
                    f"Entry point {ep.name!r} ({ep.value}) in group {self.entry_point_group} failed to load: "
                    f"{exc}") from exc


def load_module(module: str) -> None:
    """Import ``module`` (dotted name); :class:`RegistryError` if it cannot be imported.

    Like ``python -m``, the current directory is searched too, so a user's
    ``--module mypipeline.producers`` works from their project directory.
    """
    import os
    import sys

    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise RegistryError(f"Cannot import module {module!r} to find pipeline classes: {exc}.") from exc


def _where(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"
