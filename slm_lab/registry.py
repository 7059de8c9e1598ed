"""Name -> component registries. Specs name classes by string; these resolve them with clear errors."""

from collections.abc import Callable, Iterator

from slm_lab.errors import SpecError

__all__ = ["Registry"]


class Registry[T]:
    """A mapping from spec names to components, filled with the ``register`` decorator.

    >>> NETS = Registry("net")
    >>> @NETS.register("MLPNet")
    ... class MLPNet: ...
    >>> NETS.get("MLPNet") is MLPNet
    True
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._entries[name] = obj
            return obj

        return decorator

    def get(self, name: str, key: str | None = None) -> T:
        """Look up ``name``; ``key`` is the dotted spec key to name in the error."""
        try:
            return self._entries[name]
        except KeyError:
            where = f"{key}: " if key else ""
            raise SpecError(
                f"{where}unknown {self.kind} {name!r}; valid names: {', '.join(sorted(self._entries))}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
