"""The ISO 13616 IBAN and its mod-97 check digits (ISO 7064), one IBAN or many at once."""

from __future__ import annotations

import string

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

MODULUS = 97
GERMAN_BBAN_DIGITS = 18
"""A German BBAN: an 8-digit bank code and a 10-digit account number."""
_LETTER_VALUES = {letter: str(10 + i) for i, letter in enumerate(string.ascii_uppercase)}


def _numeric(text: str) -> str:
    """``text`` with every letter replaced by its two-digit value (A=10 ... Z=35)."""
    return "".join(_LETTER_VALUES.get(char, char) for char in text)


def check_digits(country: str, bban: str) -> str:
    """The two check digits that make ``country`` + check digits + ``bban`` a valid IBAN."""
    remainder = int(_numeric(bban + country + "00")) % MODULUS
    return f"{MODULUS + 1 - remainder:02d}"


def is_valid(iban: str) -> bool:
    """True when ``iban`` is a country code, two digits and an alphanumeric BBAN, mod 97 = 1."""
    if len(iban) < 5 or not (iban[:2].isalpha() and iban[:2].isupper() and iban[2:4].isdigit()):
        return False
    bban = iban[4:]
    if not all(char.isdigit() or char in _LETTER_VALUES for char in bban):
        return False
    return int(_numeric(bban + iban[:4])) % MODULUS == 1


def german_ibans(bban: np.ndarray) -> pa.Array:
    """``DE`` IBANs of 18-digit BBANs given as int64 (at least 10**17), vectorized."""
    if len(bban) and (bban.min() < 10 ** (GERMAN_BBAN_DIGITS - 1) or bban.max() >= 10**18):
        raise ValueError("a German BBAN has exactly 18 digits")
    # bban * 10**6 + int("DE00" as digits) does not fit in int64; reduce mod 97 on the way
    suffix = int(_numeric("DE00"))
    remainder = (bban % MODULUS * (10**6 % MODULUS) + suffix) % MODULUS
    checks = pc.utf8_lpad(pc.cast(pa.array(MODULUS + 1 - remainder), pa.string()), 2, "0")
    return pc.binary_join_element_wise("DE", checks, pc.cast(pa.array(bban), pa.string()), "")
