"""dbt-duckdb plugin that registers Blueprint's Python functions on every warehouse connection.

Declared in ``dbt_project/profiles.yml``
(``plugins: [{module: orchestration.lib.features.dbt_udfs}]``).
It gives the SQL a one-argument ``pseudonymize(value)``: the key is held by the function, so it
never appears in compiled SQL, in dbt's logs or in the manifest.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from dbt.adapters.duckdb.plugins import BasePlugin
from duckdb import DuckDBPyConnection
from duckdb.sqltypes import VARCHAR

from orchestration.lib.features.pseudonymize import pseudonymize_many
from orchestration.settings import pseudonymization_key

PSEUDONYMIZE_FUNCTION = "pseudonymize"
CACHE_LIMIT = 2_000_000
"""Distinct values remembered across batches (about 150 MB at most); cleared when exceeded."""


class CachedPseudonymizer:
    """Arrow-vectorized HMAC: hashes each distinct value of a batch once, remembering results.

    DuckDB calls an arrow function once per vector of 2,048 rows; a card appears in many of them,
    so the cache turns 1.75 M rows into one HMAC per distinct card.
    """

    def __init__(self, key: bytes) -> None:
        self._key = key
        self._cache: dict[str, str] = {}

    def __call__(self, values: pa.Array | pa.ChunkedArray) -> pa.Array:
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        distinct = pc.unique(values)
        distinct_values = distinct.to_pylist()
        unseen = [v for v in distinct_values if v is not None and v not in self._cache]
        if len(self._cache) + len(unseen) > CACHE_LIMIT:
            self._cache.clear()
            unseen = [v for v in distinct_values if v is not None]
        self._cache.update(zip(unseen, pseudonymize_many(unseen, self._key), strict=True))
        hashed = pa.array(
            [None if v is None else self._cache[v] for v in distinct_values], type=pa.string()
        )
        return pc.take(hashed, pc.index_in(values, value_set=distinct))


class Plugin(BasePlugin):
    """Registers ``pseudonymize(varchar) -> varchar`` (HMAC-SHA256 hex) on each connection."""

    def initialize(self, plugin_config: dict[str, Any]) -> None:
        # The key is read on first connection, not at parse time: parsing needs no secret.
        self._pseudonymizer: CachedPseudonymizer | None = None

    def configure_connection(self, conn: DuckDBPyConnection) -> None:
        if self._pseudonymizer is None:
            self._pseudonymizer = CachedPseudonymizer(pseudonymization_key())
        conn.create_function(
            PSEUDONYMIZE_FUNCTION,
            self._pseudonymizer,
            [VARCHAR],
            VARCHAR,
            type="arrow",
            side_effects=False,
        )
