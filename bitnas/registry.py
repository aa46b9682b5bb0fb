"""Named registries: spaces, quantizers, tasks, hardware models, strategies, experiments,
input transforms and export formats.

A registry maps a name to a factory; the TOML spec and ``bitnas list`` use the
names, and the contract suites in ``tests/contracts`` are parametrized over them,
so that a new entry gets the common tests for free.

Entries come from two places, loaded the first time a registry is asked for a
name: bitnas's own modules (listed in :mod:`bitnas.builtins`), whose ``register``
decorators run on import, and third-party plugins, which declare Python entry
points in the registry's group (``bitnas.spaces``, ``bitnas.quantizers``,
``bitnas.tasks``, ``bitnas.hardware``, ``bitnas.strategies``, ``bitnas.experiments``,
``bitnas.input_transforms``, ``bitnas.exporters``). An entry point's name is the
registered name and its value the object (``pkg.module:MyModel``); a module whose decorators register
itself may be named instead (``pkg.module``).
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from bitnas.errors import BitnasError

T = TypeVar("T")

#: where the list of built-in modules lives (data, so that this module imports no subpackage)
BUILTINS_MODULE = "bitnas.builtins"


class Registry(Generic[T]):
    """A name -> factory map with one-line descriptions, filled on first use."""

    def __init__(self, kind: str, group: str) -> None:
        self.kind = kind
        #: the entry-point group plugins use to register here
        self.group = group
        self._factories: dict[str, Callable[..., T]] = {}
        self._descriptions: dict[str, str] = {}
        self._origins: dict[str, str] = {}
        self._loaded = False
        self._loading = False

    def register(
        self, name: str, description: str | None = None
    ) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator: register a class or factory under ``name``.

        The description defaults to the object's ``description`` attribute, else the
        first line of its docstring.
        """

        def deco(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories:
                if self._factories[name] is factory:
                    return factory
                raise BitnasError(f"{self.kind} {name!r} is registered twice "
                                  f"({self._origins[name]} and {_origin(factory)}); rename one")
            self._factories[name] = factory
            self._descriptions[name] = description or _describe(factory)
            self._origins[name] = _origin(factory)
            return factory

        return deco

    def load(self) -> None:
        """Import the built-in modules of this registry and its plugins' entry points."""
        if self._loaded or self._loading:
            return
        self._loading = True
        try:
            builtins = importlib.import_module(BUILTINS_MODULE)
            for module in builtins.MODULES.get(self.group, ()):
                importlib.import_module(module)
            for ep in entry_points(group=self.group):
                self._load_entry_point(ep)
            self._loaded = True
        finally:
            self._loading = False

    def _load_entry_point(self, ep: Any) -> None:
        dist = getattr(ep.dist, "name", None) or "?"
        try:
            obj = ep.load()
        except Exception as e:
            raise BitnasError(
                f"plugin {dist}: entry point {ep.name} = {ep.value!r} in group {self.group} "
                f"failed to load ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                "fix or uninstall the plugin"
            ) from None
        if ep.name in self._factories:  # its module registered it with a decorator
            return
        if isinstance(obj, type(importlib)):
            raise BitnasError(
                f"plugin {dist}: module {ep.value} was loaded for {self.kind} {ep.name!r} but did "
                f"not register it; decorate it with @{self.group.rpartition('.')[2].upper()}"
                f".register({ep.name!r}) or name the object (module:Object)")
        self.register(ep.name)(obj)
        self._origins[ep.name] = f"plugin {dist}"

    def names(self) -> list[str]:
        self.load()
        return sorted(self._factories)

    def describe(self) -> dict[str, str]:
        return {name: self._descriptions[name] for name in self.names()}

    def origin(self, name: str) -> str:
        """Where an entry comes from: 'bitnas', or 'plugin <distribution>'."""
        self.check(name)
        return self._origins[name]

    def __contains__(self, name: object) -> bool:
        self.load()
        return name in self._factories

    def check(self, name: str, field: str | None = None) -> str:
        """Return ``name`` if registered, else raise a one-line error with the choices."""
        self.load()
        if name in self._factories:
            return name
        where = f"{field} = {name!r}" if field else f"{name!r}"
        hint = difflib.get_close_matches(str(name), self.names(), n=1)
        did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise BitnasError(
            f"unknown {self.kind} {where}{did_you_mean}; choose one of: {', '.join(self.names())}"
        )

    def get(self, name: str) -> Callable[..., T]:
        return self._factories[self.check(name)]

    def create(self, name: str, **kwargs: Any) -> T:
        return self.get(name)(**kwargs)


def _describe(factory: Any) -> str:
    desc = getattr(factory, "description", None)
    if isinstance(desc, str) and desc:
        return desc.strip().splitlines()[0]
    lines = (factory.__doc__ or "").strip().splitlines()
    return lines[0] if lines else ""


def _origin(factory: Any) -> str:
    module = getattr(factory, "__module__", None) or type(factory).__module__
    return "bitnas" if module == "bitnas" or module.startswith("bitnas.") else f"module {module}"


SPACES: Registry[Any] = Registry("space", "bitnas.spaces")
QUANTIZERS: Registry[Any] = Registry("quantizer", "bitnas.quantizers")
TASKS: Registry[Any] = Registry("task", "bitnas.tasks")
HARDWARE: Registry[Any] = Registry("hardware model", "bitnas.hardware")
STRATEGIES: Registry[Any] = Registry("strategy", "bitnas.strategies")
EXPERIMENTS: Registry[Any] = Registry("experiment", "bitnas.experiments")
#: what turns a task's stored images into a network's input (DEX, downsampling, ...): a space
#: builds one by name, so that spaces need not import the evaluators that define them
INPUT_TRANSFORMS: Registry[Any] = Registry("input transform", "bitnas.input_transforms")
#: deployable file formats of a candidate (``bitnas export --format NAME``)
EXPORTERS: Registry[Any] = Registry("export format", "bitnas.exporters")

ALL = {
    "spaces": SPACES,
    "quantizers": QUANTIZERS,
    "tasks": TASKS,
    "hardware": HARDWARE,
    "strategies": STRATEGIES,
    "experiments": EXPERIMENTS,
    "input_transforms": INPUT_TRANSFORMS,
    "exporters": EXPORTERS,
}


def load_all() -> None:
    """Load every registry (built-ins and plugins)."""
    for reg in ALL.values():
        reg.load()
