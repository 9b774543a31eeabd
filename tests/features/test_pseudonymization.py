"""Personal data stops at staging: card numbers and customer ids become keyed HMACs, the key
stays out of everything dbt writes, and no name, e-mail or card number reaches the warehouse."""

from __future__ import annotations

import hashlib
import hmac

import duckdb
import pyarrow as pa
import pytest

from orchestration.lib.features.dbt_udfs import CachedPseudonymizer
from orchestration.lib.features.pseudonymize import (
    key_fingerprint,
    pseudonymize,
    pseudonymize_many,
)
from tests.features.raw_world import DbtRun, World, read_table, warehouse_tables

KEY = b"a test key, not a secret"
PAN = "4111111111111111"


def test_a_card_key_is_the_hmac_sha256_of_the_card_number() -> None:
    assert pseudonymize(PAN, KEY) == hmac.new(KEY, PAN.encode(), hashlib.sha256).hexdigest()
    assert pseudonymize(PAN, KEY) != pseudonymize(PAN, KEY + b"!")


def test_vectorized_variants_agree_with_the_scalar_function() -> None:
    pans = [PAN, None, "5500000000000004", PAN]
    expected = [
        pseudonymize(PAN, KEY), None, pseudonymize("5500000000000004", KEY), pseudonymize(PAN, KEY)
    ]
    assert pseudonymize_many(pans, KEY) == expected
    udf = CachedPseudonymizer(KEY)
    assert udf(pa.array(pans)).to_pylist() == expected
    assert udf(pa.chunked_array([pans[:2], pans[2:]])).to_pylist() == expected  # cache reused


def test_key_fingerprint_is_short_stable_and_reveals_nothing() -> None:
    fingerprint = key_fingerprint(KEY)
    assert len(fingerprint) == 12 and int(fingerprint, 16) >= 0
    assert fingerprint == key_fingerprint(KEY) != key_fingerprint(KEY + b"!")
    assert fingerprint not in (hashlib.sha256(KEY).hexdigest(), pseudonymize("", KEY))


def test_warehouse_keys_are_the_hmac_of_card_numbers_and_customer_ids(
    built: DbtRun, world: World, pseudonymization_key_hex: str
) -> None:
    key = pseudonymization_key_hex.encode()

    def expected(value: str) -> str:
        return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()

    features = read_table(built.warehouse, "transaction_features").set_index("transaction_id")
    pans = world.transactions.set_index("transaction_id")["card_number"]
    assert (features["card_key"] == pans.loc[features.index].map(expected)).all()

    customers = read_table(built.warehouse, "customers").set_index("customer_key")
    latest = world.customers.drop_duplicates("customer_id", keep="last")
    assert set(customers.index) == set(latest["customer_id"].map(expected))
    assert (
        customers.loc[latest["customer_id"].map(expected), "card_key"].tolist()
        == latest["card_number"].map(expected).tolist()
    )


def test_the_key_is_not_in_compiled_sql_manifest_or_logs(
    built: DbtRun, pseudonymization_key_hex: str
) -> None:
    written = [p for d in (built.target_path, built.log_path) for p in d.rglob("*") if p.is_file()]
    assert any(p.suffix == ".sql" for p in written) and any(p.suffix == ".log" for p in written)
    leaks = [p for p in written if pseudonymization_key_hex.encode() in p.read_bytes()]
    assert leaks == []


def test_the_manifest_and_compiled_sql_do_not_depend_on_blueprint_home(built: DbtRun) -> None:
    home = f"{built.home}/".encode()  # the raw zone and quarantine live under it
    baked = [
        p
        for p in (built.target_path / "manifest.json", *built.target_path.rglob("*.sql"))
        if home in p.read_bytes()
    ]
    assert baked == []


@pytest.fixture(scope="module")
def warehouse_text(built: DbtRun) -> dict[str, list[str]]:
    """Every value of every warehouse table, as text, by table."""
    with duckdb.connect(str(built.warehouse), read_only=True) as conn:
        return {
            table: [
                value
                for row in conn.sql(f"select columns(*)::varchar from {table}").fetchall()
                for value in row
                if value is not None
            ]
            for table in warehouse_tables(built.warehouse)
        }


def test_no_personal_data_reaches_the_warehouse(
    warehouse_text: dict[str, list[str]], world: World
) -> None:
    customers = world.customers
    personal = {
        *world.transactions["card_number"],
        *customers["card_number"],
        *customers["name"],
        *customers["email"],
        *customers["phone"],
        *customers["address"],
        *customers["customer_id"],
        *customers["date_of_birth"].astype(str),
    }
    assert len(warehouse_text) >= 9
    found = {
        (table, value)
        for table, values in warehouse_text.items()
        for value in values
        if value in personal or any(pan in value for pan in customers["card_number"])
    }
    assert found == set()


def test_staging_drops_personal_columns(built: DbtRun) -> None:
    forbidden = {"card_number", "customer_id", "name", "email", "phone", "address", "date_of_birth"}
    for table in warehouse_tables(built.warehouse):
        columns = set(read_table(built.warehouse, table).columns)
        assert columns.isdisjoint(forbidden), table
