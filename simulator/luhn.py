"""The Luhn checksum that every card number (PAN) carries in its last digit."""

from __future__ import annotations


def _luhn_sum(digits: str) -> int:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total


def check_digit(payload: str) -> str:
    """The digit to append to ``payload`` so that the whole number passes Luhn."""
    return str((10 - _luhn_sum(payload + "0") % 10) % 10)


def is_valid(number: str) -> bool:
    """True when ``number`` is all digits and its Luhn checksum is 0 mod 10."""
    return number.isdigit() and _luhn_sum(number) % 10 == 0
