"""Deliver, day by day, the files a churn world simulated with ``hold_from`` held back.

The same rule as the fraud world's outbox (:mod:`simulator.outbox`): a file is held by its
delivery day, so a late or redelivered usage file stays late in a replay.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from simulator import outbox
from simulator.churn.files import EXTENSIONS
from simulator.churn.run import WORLD_FILE, outbox_dir, record_dir
from simulator.run import LANDING_DIR


def _held_files(home: Path) -> list[outbox.HeldFile]:
    home = Path(home)
    return outbox.held_files(home, record_dir(home) / WORLD_FILE, outbox_dir(home), EXTENSIONS)


def held_days(home: Path) -> list[date]:
    """The delivery days still in the churn outbox, sorted; raises like :func:`deliver`."""
    return outbox.delivery_days(_held_files(home))


def deliver(home: Path, through: date) -> list[Path]:
    """Move every held churn file with a delivery day up to ``through`` into landing.

    Returns the moved files in delivery order; a second call with the same ``through`` moves
    nothing. Raises FileNotFoundError if ``home`` holds no churn world, or one simulated
    without holding days back.
    """
    return outbox.land(_held_files(home), Path(home) / LANDING_DIR, through)
