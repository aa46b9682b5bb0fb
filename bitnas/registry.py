"""Named registries: spaces, quantizers, tasks, hardware models and strategies.

A registry maps a name to a factory; the TOML spec and ``bitnas list`` use the
names, and tests are parametrized over them so that a new entry gets the common
tests for free.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from bitnas.errors import BitnasError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name -> factory map with one-line descriptions."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}
        self._descriptions: dict[str, str] = {}

    def register(
        self, name: str, description: str | None = None
    ) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator: register a class or factory under ``name``.

        The description defaults to the first line of the factory's docstring.
        """

        def deco(factory: Callable[..., T]) -> Callable[..., T]:
            if name in self._factories:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            lines = (factory.__doc__ or "").strip().splitlines()
            self._factories[name] = factory
            self._descriptions[name] = description or (lines[0] if lines else "")
            return factory

        return deco

    def names(self) -> list[str]:
        return sorted(self._factories)

    def describe(self) -> dict[str, str]:
        return {name: self._descriptions[name] for name in self.names()}

    def __contains__(self, name: object) -> bool:
        return name in self._factories

    def check(self, name: str, field: str | None = None) -> str:
        """Return ``name`` if registered, else raise a one-line error with the choices."""
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


SPACES: Registry[Any] = Registry("space")
QUANTIZERS: Registry[Any] = Registry("quantizer")
TASKS: Registry[Any] = Registry("task")
HARDWARE: Registry[Any] = Registry("hardware model")
STRATEGIES: Registry[Any] = Registry("strategy")

ALL = {
    "spaces": SPACES,
    "quantizers": QUANTIZERS,
    "tasks": TASKS,
    "hardware": HARDWARE,
    "strategies": STRATEGIES,
}


def load_builtins() -> None:
    """Import the built-in modules so that their ``@register`` decorators run."""
    import bitnas.evaluators  # noqa: F401
    import bitnas.evaluators.event_datasets  # noqa: F401
    import bitnas.hardware_models  # noqa: F401
    import bitnas.quantizers  # noqa: F401
    import bitnas.search.strategies  # noqa: F401
    import bitnas.spaces  # noqa: F401
