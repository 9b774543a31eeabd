"""Card numbers (PANs): their length and the Luhn check, in one place.

Ingestion checks whole columns of PANs at once (:func:`luhn_valid_pans`); the PII scanner and
the scoring service check one digit run at a time (:func:`luhn_valid`). Both compute the same
check, tested against each other.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

PAN_LENGTH = 16
"""Digits of a card number as the sources deliver it and the service accepts it."""

_LUHN_DOUBLED = np.array([0, 2, 4, 6, 8, 1, 3, 5, 7, 9], dtype=np.uint8)
"""A digit doubled, its two digits summed."""


def luhn_valid(digits: str) -> bool:
    """Whether a run of ASCII digits (any length) passes the Luhn check."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def example_pan() -> str:
    """A card number to show in examples: a test number of the right length passing Luhn (made
    here, so that no file of the project or of a home holds one verbatim)."""
    prefix = "4" + "0" * (PAN_LENGTH - 2)
    return next(prefix + d for d in "0123456789" if luhn_valid(prefix + d))


def luhn_valid_pans(values: pa.Array) -> np.ndarray:
    """Luhn check of an array of exactly :data:`PAN_LENGTH` ASCII digits each (vectorized)."""
    if len(values) == 0:
        return np.zeros(0, dtype=bool)
    values = pc.cast(values, pa.binary(PAN_LENGTH))
    digits = np.frombuffer(
        values.buffers()[1],
        dtype=np.uint8,
        count=len(values) * PAN_LENGTH,
        offset=values.offset * PAN_LENGTH,
    ).reshape(-1, PAN_LENGTH) - ord("0")
    # Counting from the check digit (rightmost), every second digit is doubled; with an even
    # length those are the digits at even positions from the left.
    total = _LUHN_DOUBLED[digits[:, 0::2]].sum(axis=1, dtype=np.int64)
    total += digits[:, 1::2].sum(axis=1, dtype=np.int64)
    return total % 10 == 0
