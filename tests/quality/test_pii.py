"""The PII scanner finds every kind of leak it promises, wherever it is, and nothing else."""

import gzip
import json
import sqlite3

import duckdb
import numpy as np
import pandas as pd
import pytest

from orchestration.lib.quality import pii
from orchestration.lib.quality.personal_data import (
    PersonalData,
    iban_valid,
    mentions_any,
    scan_values,
)
from orchestration.lib.quality.pii import scan_outside_raw_zone, scan_paths
from orchestration.lib.quality.raw_zone import load_personal_data, personal_data_snapshots
from orchestration.lib.quality.scan_cache import ScanCache
from orchestration.lib.quality.scanners import scan_text_file
from orchestration.settings import get_settings

PAN = "4539578763621486"  # passes Luhn
IBAN = "GB82WEST12345698765432"  # ISO 13616's example: passes mod-97
KNOWN = PersonalData.of([
    ("customers.name", "Dr. Maria Gonzalez MD"),
    ("customers.phone", "(555)010-4477"),
    ("customers.email", "maria@example.org"),
])


def kinds(findings):
    return sorted(f.kind for f in findings)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (PAN, ["card number (PAN)"]),
        (f"card {PAN} used", ["card number (PAN)"]),
        ("4539 5787 6362 1486", []),  # not a standalone run of digits
        (f"a1b2{PAN}ff", []),  # a fragment of a longer token, e.g. a hex digest
        ("4539578763621487", []),  # fails Luhn
        ("elapsed 0.4539578763621486 s", []),  # the fraction of a decimal number
        ("x 4539578763621486.25", []),  # the integer part of a decimal number
        (f"max {PAN}.0", ["card number (PAN)"]),  # a card number in a float column
        ("write to maria@example.org now", ["customers.email value", "email address"]),
        ("write to john@example.org now", ["email address"]),
        ("__repository__@orchestration.definitions", []),  # a code location, not mail
        ("email: contact@bentoml.com", []),  # a vendor's role address in a Bento's OpenAPI spec
        ("email: contact@bentoml.org", ["email address"]),  # only that exact address
        ("call 555-010-9999 x12", ["phone number"]),
        ("(555)010-4477", ["customers.phone value", "phone number"]),
        ("555.010.4477 again", ["customers.phone value", "phone number"]),  # any separators
        ("customer Maria Gonzalez complained", ["customers.name value"]),
        ("maria gonzalez", []),  # lower-case text is not a name column value
        ("Zoë wrote: Dear Dr. Maria Gonzalez,", ["customers.name value"]),  # not ASCII
        ("Maria Lopez met Ana Gonzalez", []),  # the name's words, not side by side
        ("2018-04-01 07:19:05", []),  # a timestamp is not a phone number
        ('"x": [104117.3125, 2.5]', []),  # a number in a report's chart data is not a phone
        ("-104117.3125", []),
        ("104117-3125", []),  # mixed separators: not a phone number's format
        ("555-010-9999.25", []),  # the integer part of a decimal number
        ("555 010 4477", ["customers.phone value", "phone number"]),
        ("call +1-555-010-9999x12", ["phone number"]),
        ("t-123456", []),
        (f"paid from {IBAN}", ["IBAN"]),
        ("paid from GB82 WEST 1234 5698 7654 32", ["IBAN"]),  # printed in groups of four
        ("paid from GB83WEST12345698765432", []),  # a wrong check digit
        ("run DE44500105175407324931X", []),  # inside a longer token
    ],
)
def test_scan_values(value, expected):
    assert kinds(scan_values([value], "here", KNOWN)) == expected


def test_findings_never_repeat_the_value():
    (finding,) = scan_values([PAN], "table.col", KNOWN)
    assert PAN not in str(finding)


def test_scan_paths_covers_tables_parquet_text_gzip_and_sqlite(tmp_path):
    home = tmp_path / "home"
    raw = home / "raw"
    raw.mkdir(parents=True)
    (raw / "allowed.csv").write_text(f"{PAN}\n")  # the raw zone may hold PII

    with duckdb.connect(str(home / "warehouse.duckdb")) as con:
        con.execute("create table clean as select 'abc' as card_key, 12 as n")
        con.execute(f"create table leaky as select {PAN}::bigint as pan_as_number")
    pd.DataFrame({"email": ["maria@example.org"]}).to_parquet(home / "export.parquet")
    with gzip.open(home / "log.txt.gz", "wt") as handle:
        handle.write("scored Maria Gonzalez\n")
    con = sqlite3.connect(home / "events.db")
    con.execute("create table event_logs (event text)")
    con.execute("insert into event_logs values ('phone (555)010-4477')")
    con.commit()
    con.close()

    report = scan_paths([home], excluded=[raw], personal=KNOWN)
    by_file: dict[str, set[str]] = {}
    for finding in report.findings:
        name = finding.location.split(":")[0].rsplit("/", 1)[-1]
        by_file.setdefault(name, set()).add(finding.kind)
    assert by_file == {
        "warehouse.duckdb": {"card number (PAN)"},
        "export.parquet": {"email address", "customers.email value"},
        "log.txt.gz": {"customers.name value"},
        "events.db": {"phone number", "customers.phone value"},
    }
    assert not any("allowed.csv" in f.location for f in report.findings)
    assert any("clean" in s for s in report.scanned)


def test_clean_tree_is_clean(tmp_path):
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        con.execute("create table t as select sha256('x') as card_key, 3.5 as amount")
    assert scan_paths([tmp_path], excluded=[], personal=KNOWN).clean


def test_the_access_logs_trace_ids_are_not_card_numbers_but_a_card_number_beside_them_is(
    tmp_path,
):
    # a span id that happens to be all digits and pass Luhn, as BentoML logs it
    access = (
        "2026-12-01T04:26:52+0000 [INFO] [entry_service:fraud_scorer:1] 127.0.0.1:42514 "
        "(scheme=http,method=POST,path=/score,type=application/json,length=130) "
        "(status=200,type=application/json,length=291) 72.571ms "
        f"(trace=e0835a1078b93288778c756586a0517b,span={PAN},sampled=0,"
        "service.name=fraud_scorer)\n"
    )
    (tmp_path / "fraud-scorer.log").write_text(access)
    assert scan_paths([tmp_path], excluded=[], personal=KNOWN).clean
    (tmp_path / "fraud-scorer.log").write_text(access.replace("length=130", f"card={PAN}"))
    report = scan_paths([tmp_path], excluded=[], personal=KNOWN)
    assert kinds(report.findings) == ["card number (PAN)"]


# --- the incremental scan -------------------------------------------------------------------

MARIA = {"name": "Dr. Maria Gonzalez MD", "phone": "(555)010-4477", "email": "maria@example.org"}
JOHN = {"name": "John Okafor", "phone": "(555)010-9911", "email": "john@example.org"}


CRM_COLUMNS = {"customers": ("name", "phone", "email")}


class Home:
    """A raw zone with daily CRM snapshots and a tree to scan, scanned with a cache."""

    def __init__(self, root):
        self.raw = root / "raw"
        self.tree = root / "tree"
        self.tree.mkdir(parents=True)
        self.cache_path = root / "quality" / "pii-scan-cache.json"
        self.pii_columns = CRM_COLUMNS

    def snapshot(self, source: str, day: str, *rows: dict) -> None:
        folder = self.raw / source / f"date={day}"
        folder.mkdir(parents=True)
        pd.DataFrame(list(rows)).to_parquet(folder / "data.parquet")

    def crm_snapshot(self, day: str, *customers: dict) -> None:
        self.snapshot("customers", day, *customers)

    def scan(self, cached: bool = True):
        snapshots = personal_data_snapshots(self.raw, self.pii_columns)
        known = load_personal_data(self.raw, self.pii_columns, snapshots)
        cache = (ScanCache(self.cache_path, self.raw, self.pii_columns, known, snapshots)
                 if cached else None)
        report = scan_paths([self.tree], excluded=[], personal=known, cache=cache)
        if cache is not None:
            cache.save()
        return report


@pytest.fixture
def home(tmp_path):
    home = Home(tmp_path)
    home.crm_snapshot("2018-04-01", MARIA)
    (home.tree / "service.log").write_text("scored t-1 in 3 ms\nJohn Okafor called\n")
    (home.tree / "report.html").write_text("<p>drift 0.12</p>")
    pd.DataFrame({"note": ["John Okafor"]}).to_parquet(home.tree / "traffic.parquet")
    return home


def test_a_second_scan_skips_what_is_unchanged_and_reads_what_changed(home):
    first = home.scan()
    assert first.clean and first.unchanged == 0
    again = home.scan()
    assert again.clean and again.unchanged == 3
    (home.tree / "report.html").write_text(f"<p>card {PAN}</p>")  # a new leak in an old file
    third = home.scan()
    assert third.unchanged == 2
    assert kinds(third.findings) == ["card number (PAN)"]
    # a file with a finding is never vouched for: the leak is reported until it is gone
    assert kinds(home.scan().findings) == ["card number (PAN)"]


def test_a_cache_made_with_other_generic_patterns_is_not_trusted(home):
    """A file found clean by older patterns may hold what today's find (a card number printed
    as a float was not one before): a cache made with other patterns means a full scan."""
    home.scan()
    assert home.scan().unchanged == 3
    cache = json.loads(home.cache_path.read_text())
    home.cache_path.write_text(json.dumps({**cache, "patterns": "older"}))
    assert home.scan().unchanged == 0


def test_a_customer_the_crm_learns_later_is_found_in_files_already_scanned(home):
    assert home.scan().clean  # John is nobody yet: his name is just text
    home.crm_snapshot("2018-04-02", MARIA, JOHN)
    (home.tree / "untouched.txt").write_text("nothing to see")
    report = home.scan()
    found = {(f.location.rsplit("/", 1)[-1].split(":")[0], f.kind) for f in report.findings}
    assert found == {
        ("service.log", "customers.name value"), ("traffic.parquet", "customers.name value"),
    }
    # the HTML report mentions nobody new: not read again; the table does: scanned again
    assert report.unchanged == 1


HALL = {"name": "Ada Hall", "phone": "(555)010-2323", "email": "ada@example.org"}


def test_files_that_mention_no_new_identifier_as_a_word_are_not_read_again(home):
    """A new customer's last name inside another word ("shall") is no mention: the text file
    stays vouched for; as a word it is, and the scan finds the name (tables are read again)."""
    (home.tree / "notes.txt").write_text("it shall pass\nhallway 5, marshall-plan\n")
    (home.tree / "leak.txt").write_text("called by Ada Hall.\n")
    pd.DataFrame({"who": ["Ada Hall", "x"]}).to_parquet(home.tree / "leak.parquet")
    assert home.scan().clean  # nobody is Ada Hall yet
    home.crm_snapshot("2018-04-02", MARIA, HALL)
    report = home.scan()
    found = {(f.location.rsplit("/", 1)[-1].split(":")[0], f.kind) for f in report.findings}
    assert found == {("leak.parquet", "customers.name value"), ("leak.txt", "customers.name value")}
    skipped = {p.split("/")[-1].split(" ")[0] for p in report.scanned if "unchanged" in p}
    assert {"notes.txt", "report.html"} <= skipped
    assert not {"leak.parquet", "leak.txt", "traffic.parquet"} & skipped


@pytest.mark.parametrize(
    ("text", "mentioned"),
    [("it shall pass", False), ("hallway", False), ("mr. hall called", True),
     ("HALL", True), ("5hall", True), ("o'hall", True), ("a phone (555)010-2323", True),
     ("ADA@EXAMPLE.ORG", True), ("Hällo hall", True)],
)
def test_mentions_any_is_a_word_level_superset_of_what_the_scan_finds(text, mentioned):
    known = PersonalData.of([("customers.name", HALL["name"]), ("customers.phone", HALL["phone"]),
                             ("customers.email", HALL["email"])])
    assert mentions_any(text, known) is mentioned
    if any(f.kind.startswith("customers.") for f in scan_values([f"ada {text}"], "x", known)):
        assert mentioned  # never a finding where no mention was seen


def test_a_value_of_a_column_declared_later_is_found_in_files_already_scanned(home):
    """A new use case's personal-data column (an account's IBAN) makes its values searched for,
    even in files a scan found clean before it was declared."""
    account = {"account_id": "a-1", "iban": IBAN, "opened": "2018-04-01"}
    home.snapshot("accounts", "2018-04-01", account)
    (home.tree / "export.txt").write_text(f"account {IBAN.lower()}\n")  # not an IBAN's shape
    assert home.scan().clean
    home.pii_columns = {**CRM_COLUMNS, "accounts": ("iban",)}
    report = home.scan()
    assert {(f.location.rsplit("/", 1)[-1], f.kind) for f in report.findings} == {
        ("export.txt", "accounts.iban value"),
    }


# --- IBANs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("candidate", "valid"),
    [(IBAN, True), ("GB82 WEST 1234 5698 7654 32", True), ("DE89370400440532013000", True),
     ("GB83WEST12345698765432", False), ("DE89370400440532013001", False),
     ("GB82WEST", False)],
)
def test_iban_check_is_iso_13616_mod_97(candidate, valid):
    assert iban_valid(candidate) is valid


def test_random_uppercase_tokens_of_an_ibans_shape_are_rarely_flagged():
    rng = np.random.default_rng(0)
    alphabet = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"))
    tokens = ["".join(rng.choice(alphabet[:26], 2)) + "".join(rng.choice(alphabet[26:], 2))
              + "".join(rng.choice(alphabet, 18)) for _ in range(2000)]
    flagged = sum(iban_valid(token) for token in tokens)
    assert flagged < 2000 / 97 * 2  # the check digits pass by chance once in 97


def test_an_iban_outside_the_raw_zone_is_found_and_one_inside_it_is_allowed(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("BLUEPRINT_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(pii, "DBT_PROJECT_DIR", tmp_path / "dbt_project")
    settings = get_settings()
    raw = settings.raw_dir / "accounts" / "date=2018-04-01"
    raw.mkdir(parents=True)
    pd.DataFrame({"account_id": ["a-1"], "iban": ["DE89370400440532013000"]}).to_parquet(
        raw / "data.parquet"
    )
    (settings.landing_dir / "accounts").mkdir(parents=True)
    (settings.landing_dir / "accounts" / "accounts.csv").write_text(f"a-2,{IBAN}\n")
    exports = settings.home / "exports"
    exports.mkdir(parents=True)
    (exports / "invalid.csv").write_text("a-3,GB83WEST12345698765432\n")
    columns = {"accounts": ("iban",)}

    report, known = scan_outside_raw_zone(settings, columns, incremental=False)
    assert report.clean, report.findings
    assert len(known.verbatim) == 1

    (exports / "planted.csv").write_text(f"a-2,{IBAN}\n")  # valid, unknown to the raw zone
    (exports / "printed.txt").write_text("paid from GB82 WEST 1234 5698 7654 32\n")
    (exports / "known.txt").write_text("note: de89370400440532013000\n")  # not an IBAN's shape
    report, _ = scan_outside_raw_zone(settings, columns)
    found = {(f.location.rsplit("/", 1)[-1], f.kind) for f in report.findings}
    assert found == {
        ("planted.csv", "IBAN"), ("printed.txt", "IBAN"), ("known.txt", "accounts.iban value"),
    }
    assert not any(IBAN in str(f) for f in report.findings)


def test_another_use_cases_warehouse_is_left_to_its_own_check(tmp_path, monkeypatch):
    """A use case's check does not open the others' warehouses (their writers may hold them);
    each use case's own check scans its own, inside its pool."""
    import duckdb

    monkeypatch.setenv("BLUEPRINT_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(pii, "DBT_PROJECT_DIR", tmp_path / "dbt_project")
    settings = get_settings("churn")
    other = get_settings("fraud").warehouse_path
    other.parent.mkdir(parents=True)
    with duckdb.connect(str(other)) as con:
        con.execute(f"create table leaky as select '{IBAN}' as iban")

    alone, _ = scan_outside_raw_zone(settings, {}, incremental=False, others=[other])
    assert alone.clean and not any("fraud.duckdb" in s for s in alone.scanned)
    everything, _ = scan_outside_raw_zone(settings, {}, incremental=False)
    assert [f.kind for f in everything.findings] == ["IBAN"]


def test_every_kind_of_declared_value_is_searched_verbatim():
    known = PersonalData.of([
        ("customers.address", "0521 Karen Burg Suite 409, North Jennifer, NM 45123"),
        ("customers.date_of_birth", "1961-07-30"),
        ("customers.name", "Ada"),  # one word: not identifying, not searched
    ])
    assert kinds(scan_values(["sent to 0521 karen burg suite 409, North Jennifer, NM 45123"],
                             "x", known)) == ["customers.address value"]
    assert kinds(scan_values(["born 1961-07-30"], "x", known)) == ["customers.date_of_birth value"]
    assert kinds(scan_values(["on 1961-07-31, Ada said 19610730"], "x", known)) == []


def test_dbts_docs_app_is_library_code_but_the_project_data_it_inlines_is_scanned(tmp_path):
    """The feature catalog is dbt's docs app with the project's manifest and catalog in place of
    two placeholders: the app's own digit runs (a Luhn-valid build id) are not card numbers, a
    card number in the inlined data is."""
    import importlib.util
    from pathlib import Path

    app = Path(importlib.util.find_spec("dbt").origin).parent / "task" / "docs" / "index.html"
    bundle = app.read_text(encoding="utf-8")
    assert "1531011493999" in bundle and '"MANIFEST.JSON INLINE DATA"' in bundle

    def page(manifest: str) -> str:
        return bundle.replace('"MANIFEST.JSON INLINE DATA"', manifest).replace(
            '"CATALOG.JSON INLINE DATA"', '{"nodes": {}}'
        )

    clean = tmp_path / "clean" / "index.html"
    clean.parent.mkdir()
    clean.write_text(page('{"nodes": {"model.blueprint.x": {"description": "a feature"}}}'))
    assert scan_text_file(clean, KNOWN).findings == []
    leaky = tmp_path / "leaky" / "index.html"
    leaky.parent.mkdir()
    leaky.write_text(page(f'{{"nodes": {{"unit_test": {{"given": "{PAN}"}}}}}}'))
    assert kinds(scan_text_file(leaky, KNOWN).findings) == ["card number (PAN)"]


def _drift_report(tmp_path, name: str, reference: pd.DataFrame, current: pd.DataFrame):
    """A real Evidently data drift report of every column, as monitoring writes them."""
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    from orchestration.lib.monitoring.reports import _save_html

    numeric = [c for c in reference.columns if reference[c].dtype.kind == "f"]
    text = [c for c in reference.columns if c not in numeric]
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=text)
    snapshot = Report([DataDriftPreset()]).run(
        current_data=Dataset.from_pandas(current, data_definition=definition),
        reference_data=Dataset.from_pandas(reference, data_definition=definition),
    )
    path = tmp_path / name / "data_drift.html"
    _save_html(snapshot, path)
    return path


def test_numbers_in_a_reports_chart_data_are_not_personal_data(tmp_path):
    """The defect that stopped a second ``make demo``: the float 104117.3125 in a drift report's
    chart data was called a phone number. Numbers of every size, however printed, are not."""
    rng = np.random.default_rng(0)
    # a histogram of 0 .. 1041173.125 has the bin edge 104117.3125, as the demo's report had
    amounts = np.concatenate([[0.0, 1041173.125], rng.uniform(0, 1041173.125, 500)])
    frame = pd.DataFrame({"amount": amounts, "ratio": rng.random(len(amounts))})
    path = _drift_report(tmp_path, "clean", frame, frame.assign(ratio=frame["ratio"] * 3))
    assert "104117.3125" in path.read_text()  # the number is in the chart data
    assert scan_text_file(path, KNOWN).findings == []


def test_personal_data_planted_in_a_reports_table_or_chart_data_is_found(tmp_path):
    """No blind spot: a card number as a number (the chart data prints it as ``....0``), an
    email and a phone number as category values, in a real report, are each found."""
    rng = np.random.default_rng(1)
    rows = 300
    reference = pd.DataFrame({
        "amount": rng.lognormal(3, 1, rows),
        "contact": rng.choice(["web", "app"], rows),
    })
    current = reference.copy()
    current.loc[0, "amount"] = float(PAN)
    current.loc[1, "contact"] = "john@example.org"
    current.loc[2, "contact"] = "555-010-9999"
    path = _drift_report(tmp_path, "leaky", reference, current)
    assert kinds(scan_text_file(path, KNOWN).findings) == [
        "card number (PAN)", "email address", "phone number",
    ]


def test_quotes_in_file_table_and_column_names_are_scanned_not_sql(tmp_path):
    """Issue 16: SQL built with f-strings broke on a quote in a file name; a name is text."""
    odd = tmp_path / "it's here"
    odd.mkdir()
    pd.DataFrame({'the "card"': [PAN], "ok": ["x"]}).to_parquet(odd / "o'brien.parquet")
    with duckdb.connect(str(odd / "w'house.duckdb")) as con:
        con.execute('create table "it\'s ""odd""" ("a ""col""" varchar)')
        con.execute("insert into \"it's \"\"odd\"\"\" values ('maria@example.org')")
    sqlite = sqlite3.connect(odd / "runs'.db")
    sqlite.execute('create table "the ""log""" (line text)')
    sqlite.execute("insert into \"the \"\"log\"\"\" values ('call 555-010-9999')")
    sqlite.commit()
    sqlite.close()
    report = scan_paths([odd], excluded=[], personal=KNOWN)
    found = {(f.location.rsplit("/", 1)[-1].split(":")[0], f.kind) for f in report.findings}
    assert found == {
        ("o'brien.parquet", "card number (PAN)"),
        ("w'house.duckdb", "customers.email value"), ("w'house.duckdb", "email address"),
        ("runs'.db", "phone number"),
    }
