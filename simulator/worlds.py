"""What ``blueprint simulate``, ``demo`` and ``replay`` need of a simulated world.

A use case names its simulator in its declaration (``simulator: simulator.churn``): a module
whose ``WORLD`` is a :class:`World`. The command line builds the world's config from its own
options (days, start, seed, faults, drift, plus ``--set field=value`` for any other field of the
config) and calls it; it knows nothing else of the world.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class World:
    config: type
    """The frozen dataclass of the world's parameters; it has ``n_days``, ``start``, ``seed``,
    ``faults`` and ``drift_from`` (a day index) among its fields."""
    simulate: Callable[[Path, Any, bool, int | None, bool], str]
    """``(home, config, overwrite, hold_from, progress)``: write the world, hold back the files
    delivered from the night that ends day index ``hold_from``; return a one-line summary.
    Raises FileExistsError when a world is there and ``overwrite`` is False."""
    held_days: Callable[[Path], list[date]]
    """The delivery days still held back in the outbox."""
    deliver: Callable[[Path, date], list[Path]]
    """Land the held files delivered through a day."""
    exists: Callable[[Path], bool]
    """Whether ``home`` holds this world."""
    outbox: Callable[[Path], Path]
    """Where the held files wait."""

    def config_with(self, fields: Mapping[str, str], **known: Any) -> Any:
        """The default config with ``known`` values and ``fields`` given as text, each parsed
        as its field's type; an unknown field is a ValueError naming the known ones."""
        declared = {f.name: f for f in dataclasses.fields(self.config)}
        hints = typing.get_type_hints(self.config)
        values = dict(known)
        for name, text in fields.items():
            if name not in declared:
                raise ValueError(f"{name!r} is not a field of {self.config.__name__} "
                                 f"({', '.join(sorted(declared))})")
            values[name] = _parse(text, hints[name], name)
        return self.config(**values)


def _parse(text: str, hint: Any, name: str) -> Any:
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if type(None) in options and text.lower() in ("none", ""):
        return None
    kind = next(option for option in options if option is not type(None))
    try:
        if kind is bool:
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(text)
            return text.lower() in ("true", "1", "yes")
        if kind is date:
            return date.fromisoformat(text)
        if typing.get_origin(kind) is tuple:
            item = typing.get_args(kind)[0]
            return tuple(item(part.strip()) for part in text.split(","))
        return kind(text)
    except ValueError:
        kind_name = getattr(kind, "__name__", kind)
        raise ValueError(f"{name}={text!r} cannot be read as {kind_name}") from None
