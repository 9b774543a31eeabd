"""The PII scanner finds every kind of leak it promises, wherever it is, and nothing else."""

import gzip
import sqlite3

import duckdb
import pandas as pd
import pytest

from orchestration.lib.quality.pii import (
    CrmIdentifiers,
    ScanCache,
    crm_snapshots,
    load_crm_identifiers,
    name_key,
    scan_paths,
    scan_values,
)

PAN = "4539578763621486"  # passes Luhn
CRM = CrmIdentifiers(
    name_keys=frozenset({name_key("Dr. Maria Gonzalez MD")}),
    phones=frozenset({"(555)010-4477"}),
    emails=frozenset({"maria@example.org"}),
)


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
        ("write to maria@example.org now", ["email address"]),
        ("__repository__@orchestration.definitions", []),  # a code location, not mail
        ("email: contact@bentoml.com", []),  # a vendor's role address in a Bento's OpenAPI spec
        ("email: contact@bentoml.org", ["email address"]),  # only that exact address
        ("call 555-010-4477 x12", ["phone number"]),
        ("(555)010-4477", ["CRM phone number", "phone number"]),
        ("customer Maria Gonzalez complained", ["CRM customer name"]),
        ("maria gonzalez", []),  # lower-case text is not a name column value
        ("Zoë wrote: Dear Dr. Maria Gonzalez,", ["CRM customer name"]),  # not ASCII
        ("Maria Lopez met Ana Gonzalez", []),  # the name's words, not side by side
        ("2018-04-01 07:19:05", []),  # a timestamp is not a phone number
        ("t-123456", []),
    ],
)
def test_scan_values(value, expected):
    assert kinds(scan_values([value], "here", CRM)) == expected


def test_findings_never_repeat_the_value():
    (finding,) = scan_values([PAN], "table.col", CRM)
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

    report = scan_paths([home], excluded=[raw], crm=CRM)
    by_file: dict[str, set[str]] = {}
    for finding in report.findings:
        name = finding.location.split(":")[0].rsplit("/", 1)[-1]
        by_file.setdefault(name, set()).add(finding.kind)
    assert by_file == {
        "warehouse.duckdb": {"card number (PAN)"},
        "export.parquet": {"email address"},
        "log.txt.gz": {"CRM customer name"},
        "events.db": {"phone number", "CRM phone number"},
    }
    assert not any("allowed.csv" in f.location for f in report.findings)
    assert any("clean" in s for s in report.scanned)


def test_clean_tree_is_clean(tmp_path):
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        con.execute("create table t as select sha256('x') as card_key, 3.5 as amount")
    assert scan_paths([tmp_path], excluded=[], crm=CRM).clean


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
    assert scan_paths([tmp_path], excluded=[], crm=CRM).clean
    (tmp_path / "fraud-scorer.log").write_text(access.replace("length=130", f"card={PAN}"))
    assert kinds(scan_paths([tmp_path], excluded=[], crm=CRM).findings) == ["card number (PAN)"]


# --- the incremental scan -------------------------------------------------------------------

MARIA = {"name": "Dr. Maria Gonzalez MD", "phone": "(555)010-4477", "email": "maria@example.org"}
JOHN = {"name": "John Okafor", "phone": "(555)010-9911", "email": "john@example.org"}


class Home:
    """A raw zone with daily CRM snapshots and a tree to scan, scanned with a cache."""

    def __init__(self, root):
        self.customers = root / "raw" / "customers"
        self.tree = root / "tree"
        self.tree.mkdir(parents=True)
        self.cache_path = root / "quality" / "pii-scan-cache.json"

    def crm_snapshot(self, day: str, *customers: dict) -> None:
        folder = self.customers / f"date={day}"
        folder.mkdir(parents=True)
        pd.DataFrame(list(customers)).to_parquet(folder / "data.parquet")

    def scan(self, cached: bool = True):
        snapshots = crm_snapshots(self.customers)
        crm = load_crm_identifiers(self.customers, snapshots)
        cache = ScanCache(self.cache_path, self.customers, crm, snapshots) if cached else None
        report = scan_paths([self.tree], excluded=[], crm=crm, cache=cache)
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


def test_a_customer_the_crm_learns_later_is_found_in_files_already_scanned(home):
    assert home.scan().clean  # John is nobody yet: his name is just text
    home.crm_snapshot("2018-04-02", MARIA, JOHN)
    (home.tree / "untouched.txt").write_text("nothing to see")
    report = home.scan()
    found = {(f.location.rsplit("/", 1)[-1].split(":")[0], f.kind) for f in report.findings}
    assert found == {
        ("service.log", "CRM customer name"), ("traffic.parquet", "CRM customer name"),
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
    assert found == {("leak.parquet", "CRM customer name"), ("leak.txt", "CRM customer name")}
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
    from orchestration.lib.quality.pii import mentions_any

    crm = CrmIdentifiers(
        name_keys=frozenset({name_key(HALL["name"])}), phones=frozenset({HALL["phone"]}),
        emails=frozenset({HALL["email"]}),
    )
    assert mentions_any(text, crm) is mentioned
    if any(f.kind.startswith("CRM") for f in scan_values([f"ada {text}"], "x", crm)):
        assert mentioned  # never a finding where no mention was seen
