"""The service's clock: what "now" is, and how far from it an event or a label may be.

``BLUEPRINT_SERVING_CLOCK=wall`` (production): now is the machine's local time. ``events`` (the
default: `blueprint replay`, the demo and the tests play simulated days): now is the newest
event time the service accepted, and never before the end of its snapshot's last day. An event
more than the declared ``serving.forward_skew`` after now, or more than ``serving.back_window``
before it, and a label known after now plus the skew, are refused (422) before anything is
stored: a payment dated 9999, or one dated ahead with the id the processor will use next,
would otherwise move the online state's day, stop its pruning, and conflict with the next
snapshot for good.
"""

from __future__ import annotations

import threading
from datetime import date, datetime, time, timedelta

CLOCK_ENV = "BLUEPRINT_SERVING_CLOCK"
MODES = ("events", "wall")


class OutOfClockError(ValueError):
    """A time too far from the service's clock; the message names the field."""


class ServiceClock:
    """Now, by the mode, with the declared skew and window; thread-safe."""

    def __init__(self, mode: str, forward_skew: timedelta, back_window: timedelta) -> None:
        if mode not in MODES:
            raise ValueError(f"{CLOCK_ENV} must be one of {MODES}, not {mode!r}")
        self.mode, self.forward_skew, self.back_window = mode, forward_skew, back_window
        self._newest: datetime | None = None
        self._lock = threading.Lock()

    def now(self) -> datetime | None:
        """The service's now; None while an events clock has seen nothing."""
        if self.mode == "wall":
            return datetime.now()
        return self._newest

    def observe(self, when: datetime) -> None:
        """An accepted event's time (or the end of the snapshot's last day): an events clock
        moves forward to it."""
        with self._lock:
            if self._newest is None or when > self._newest:
                self._newest = when

    def observe_snapshot(self, last_day: date) -> None:
        """A snapshot's last day: an events clock is at least at its end."""
        self.observe(datetime.combine(last_day + timedelta(days=1), time.min))

    def check_event(self, field: str, when: datetime) -> None:
        now = self.now()
        if now is None:
            return
        if when > now + self.forward_skew:
            raise OutOfClockError(
                f"{field}: more than {self.forward_skew} after the service's clock ({now})"
            )
        if when < now - self.back_window:
            raise OutOfClockError(
                f"{field}: more than {self.back_window} before the service's clock ({now})"
            )

    def check_label(self, field: str, when: datetime) -> None:
        now = self.now()
        if now is not None and when > now + self.forward_skew:
            raise OutOfClockError(f"{field}: after the service's clock ({now}): not known yet")
