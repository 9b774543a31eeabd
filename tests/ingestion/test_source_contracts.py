"""Source contracts are declarations: a new source needs no new code."""

from __future__ import annotations

import gzip

import pyarrow.parquet as pq
import pytest
from landing_builders import CONTRACTS, CUSTOMERS, DAY, FRAUD_REPORTS, TRANSACTIONS, csv_text

from orchestration.lib.ingestion.contracts import Column, Rule, SourceContract


def test_every_source_has_a_contract():
    assert list(CONTRACTS) == ["transactions", "fraud_reports", "customers"]
    assert [contract.name for contract in CONTRACTS.values()] == list(CONTRACTS)
    assert TRANSACTIONS.column_names == (
        "transaction_id",
        "tx_datetime",
        "card_number",
        "terminal_id",
        "amount",
    )
    assert [c.name for c in CUSTOMERS.columns if c.pii] == [
        "name",
        "email",
        "phone",
        "address",
        "date_of_birth",
        "card_number",
    ]
    assert (TRANSACTIONS.extension, FRAUD_REPORTS.extension, CUSTOMERS.extension) == (
        "csv.gz",
        "csv",
        "jsonl.gz",
    )


@pytest.mark.parametrize(
    "broken",
    [
        dict(key=("merchant_id",)),
        dict(columns=(Column("id"), Column("id"))),
        dict(columns=(Column("id"), Column("when", "date", rules=(Rule.NON_NEGATIVE,)))),
        dict(type_change_share=0),
    ],
    ids=["key not a column", "duplicate column", "rule for another type", "zero share"],
)
def test_inconsistent_contract_is_refused(broken):
    declaration = dict(name="s", version=1, file_format="csv", gzip=False)
    declaration |= dict(columns=(Column("id"),), key=("id",)) | broken
    with pytest.raises(ValueError):
        SourceContract(**declaration)


def test_a_new_source_is_only_a_declaration(zones):
    terminals = SourceContract(
        name="terminals",
        version=1,
        file_format="csv",
        gzip=True,
        columns=(
            Column("terminal_id", rules=(Rule.DIGITS,)),
            Column("opened_on", "date", rules=(Rule.NOT_AFTER_PARTITION_DATE,)),
            Column("label", nullable=True),
        ),
        key=("terminal_id",),
    )
    rows = [["1", "2018-01-01", "kiosk"], ["2", "2018-05-01", ""], ["3", "2018-03-01", ""]]
    text = csv_text(["terminal_id", "opened_on", "label"], rows)
    zones.deliver("terminals", DAY, "csv.gz", gzip.compress(text.encode()))

    result = zones.ingest(terminals)

    assert result.quarantine_reasons == {"opened_on: after business date 2018-04-01": 1}
    snapshot = pq.read_table(result.path).to_pylist()
    assert [(r["terminal_id"], r["label"]) for r in snapshot] == [("1", "kiosk"), ("3", None)]
