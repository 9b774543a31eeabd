"""Deliver, day by day, the files a world simulated with ``hold_from`` held back.

A file is held when its *delivery day* (the business day whose following night it arrives in,
see :mod:`simulator.sources`) is ``hold_from`` or later. It is the file's business date unless
the file is late (a transactions file 3 days late is delivered with the day 3 days after its
own) or a redelivery (the intact copy of a truncated file comes with the next day), so a replay
sees every fault when the live system would have.

:func:`held_files`, :func:`files_in`, :func:`delivery_days` and :func:`land` work on any
outbox; the churn world's outbox (:mod:`simulator.churn.outbox`) uses them too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import date
from pathlib import Path

from simulator import sources
from simulator.run import LANDING_DIR, SIMULATOR_DIR, WORLD_FILE, outbox_dir

HeldFile = tuple[sources.DeliveredFile, Path]


def held_files(
    home: Path, world_file: Path, outbox: Path, extensions: Mapping[str, str] = sources.EXTENSIONS
) -> list[HeldFile]:
    """Every file in ``outbox``, in the order the sources deliver them.

    Raises FileNotFoundError if ``world_file`` (the world's record) or ``outbox`` is missing.
    """
    if not world_file.exists():
        raise FileNotFoundError(f"no simulated world in {home}: simulate one first")
    if not outbox.is_dir():
        raise FileNotFoundError(
            f"the world in {home} was simulated without holding days back: no {outbox}"
        )
    return files_in(outbox, extensions)


def files_in(outbox: Path, extensions: Mapping[str, str] = sources.EXTENSIONS) -> list[HeldFile]:
    """Every file in the ``<source>/`` folders of ``outbox``, in delivery order."""
    held = []
    for path in outbox.glob("*/*"):
        if path.name.startswith("."):
            continue  # a temporary file of sources.write_atomic
        parsed = sources.parse_file_name(path.name, extensions)
        if parsed is None or parsed.source != path.parent.name:
            raise ValueError(f"{path} is not a file a source delivers")
        held.append((parsed, path))
    return sorted(held, key=lambda item: (item[0].delivered, item[0].source, item[1].name))


def delivery_days(held: list[HeldFile]) -> list[date]:
    """The delivery days of ``held``, sorted, each once."""
    return sorted({sources.delivery_day(parsed.delivered) for parsed, _ in held})


def land(held: list[HeldFile], landing: Path, through: date) -> list[Path]:
    """Move the files of ``held`` with a delivery day up to ``through`` into ``landing``."""
    landed = []
    for parsed, path in held:
        if sources.delivery_day(parsed.delivered) > through:
            continue
        target = landing / parsed.source / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)
        landed.append(target)
    return landed


def _held_files(home: Path) -> list[HeldFile]:
    home = Path(home)
    return held_files(home, home / SIMULATOR_DIR / WORLD_FILE, outbox_dir(home))


def held_days(home: Path) -> list[date]:
    """The delivery days still in the outbox, sorted; raises FileNotFoundError like deliver."""
    return delivery_days(_held_files(home))


def deliver(home: Path, through: date) -> list[Path]:
    """Move every held file with a delivery day up to ``through`` into landing; return them.

    Each file is renamed into ``landing/<source>/`` (atomic: the outbox lives on the same
    filesystem), in delivery order. A second call with the same ``through`` moves nothing.
    Raises FileNotFoundError if ``home`` holds no world, or one simulated without holding.
    """
    return land(_held_files(home), Path(home) / LANDING_DIR, through)
