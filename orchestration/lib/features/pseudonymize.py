"""Keyed pseudonymization of identifiers (card numbers, customer ids) with HMAC-SHA256.

The one implementation shared by the warehouse (registered as a DuckDB function by
``orchestration.lib.features.dbt_udfs``) and the serving layer, so a value seen online maps to
the same pseudonym (a column's declared ``pseudonym``) as in the training data. Without the key a
pseudonym cannot be linked back to its value; with the key it is reproducible, which is what
joins across sources need.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

FINGERPRINT_MESSAGE = b"blueprint pseudonymization key fingerprint"
FINGERPRINT_LENGTH = 12


def _keyed_hash(key: bytes) -> hmac.HMAC:
    return hmac.new(key, digestmod=hashlib.sha256)


def pseudonymize(value: str, key: bytes) -> str:
    """HMAC-SHA256 of ``value`` (UTF-8) under ``key``, as 64 lower-case hex characters."""
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


def pseudonymize_many(values: Iterable[str | None], key: bytes) -> list[str | None]:
    """:func:`pseudonymize` over many values, hashing each distinct one once; None stays None."""
    keyed = _keyed_hash(key)  # the key schedule is computed once and copied per value
    done: dict[str, str] = {}
    result: list[str | None] = []
    for value in values:
        if value is None:
            result.append(None)
            continue
        digest = done.get(value)
        if digest is None:
            h = keyed.copy()
            h.update(value.encode())
            digest = done[value] = h.hexdigest()
        result.append(digest)
    return result


def key_fingerprint(key: bytes) -> str:
    """A short, non-reversible fingerprint of the key, safe to log: tells whether two keys match."""
    tag = hmac.new(key, FINGERPRINT_MESSAGE, hashlib.sha256).digest()
    return hashlib.sha256(tag).hexdigest()[:FINGERPRINT_LENGTH]
