"""Quality gates: Great Expectations suites and the personal-data scan, as blocking checks.

Every ``expectations/<use case>/<asset_name>.json`` becomes a blocking check on the asset of
that name: a failing suite stops everything downstream of that asset in the run. The use case's
training table also gets the personal-data scan as a blocking check.
"""


from pathlib import Path

import dagster as dg
from dagster_duckdb import DuckDBResource

from orchestration.defs.scope import Scope
from orchestration.lib.core.markdown import markdown_table
from orchestration.lib.core.usecase import declared_pii_columns, usecase_names
from orchestration.lib.quality.expectations import (
    SuiteError,
    contract_bound_disagreements,
    read_suite,
    validate_frame,
)
from orchestration.lib.quality.pii import scan_outside_raw_zone
from orchestration.settings import EXPECTATIONS_DIR, USECASES_DIR, get_settings


def _failures_markdown(failures: list[dict]) -> str:
    return markdown_table(
        ["expectation", "column", "unexpected", "examples"],
        [
            [f["expectation"], f["column"] or "", f["unexpected_count"],
             ", ".join(f["examples"]) or f.get("observed") or f.get("error") or ""]
            for f in failures
        ],
    )


def build_suite_check(scope: Scope, suite_path: Path) -> dg.AssetChecksDefinition:
    asset_name = suite_path.stem

    @dg.asset_check(
        asset=scope.key(asset_name),
        name="expectations_suite",
        blocking=True,
        pool=scope.pool,
        description=(
            f"Great Expectations suite {suite_path.relative_to(EXPECTATIONS_DIR.parent)}; "
            "blocks downstream."
        ),
    )
    def _suite_check(warehouse: DuckDBResource) -> dg.AssetCheckResult:
        with warehouse.get_connection() as con:
            frame = con.execute(f'select * from "{asset_name}"').df()
        result = validate_frame(frame, suite_path)
        return dg.AssetCheckResult(
            passed=result.success,
            metadata={
                "suite": suite_path.name,
                "expectations_evaluated": result.evaluated,
                "expectations_failed": len(result.failures),
                "rows": len(frame),
                "failures": dg.MetadataValue.md(_failures_markdown(result.failures)),
            },
        )

    return _suite_check


PII_CHECK = "no_personal_data"
"""The personal-data scan's check name (on the table a use case's models learn from)."""


def build_pii_check(scope: Scope, asset_name: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=scope.key(asset_name),
        name=PII_CHECK,
        blocking=True,
        pool=scope.pool,
        description=(
            "Scans every table and file outside the raw zone for the values of every column "
            "a use case declares personal data, and for PANs, IBANs, emails and phone "
            "numbers; blocks downstream on any finding. Incremental: a file found clean "
            "before and unchanged since is only checked for what the raw zone learned in "
            "between (`blueprint scan-pii --full` rescans everything)."
        ),
    )
    def _pii_check() -> dg.AssetCheckResult:
        # every use case's personal data: the home (and what is outside its raw zone) is shared;
        # the other use cases' warehouses are their own checks', each inside its own pool
        pii_columns = declared_pii_columns(USECASES_DIR)
        others = [get_settings(name).warehouse_path for name in usecase_names(USECASES_DIR)
                  if name != scope.name]
        report, crm = scan_outside_raw_zone(scope.settings(), pii_columns, others=others)
        findings = "\n".join(f"- {f}" for f in report.findings[:50]) or "none"
        return dg.AssetCheckResult(
            passed=report.clean,
            metadata={
                "locations_scanned": len(report.scanned),
                "files_unchanged_since_a_clean_scan": report.unchanged,
                "findings": len(report.findings),
                "names_known": len(crm.name_keys),
                "details": dg.MetadataValue.md(findings),
            },
        )

    return _pii_check


def quality_checks(scope: Scope) -> list[dg.AssetChecksDefinition]:
    """One blocking check per suite of the use case (``expectations/<use case>/<table>.json``),
    and the personal-data scan on the table its models learn from: the scan covers everything
    outside the raw zone (every table, not only this one); it runs once per build, after the
    last warehouse table, and gates what trains on it."""
    suites = sorted((EXPECTATIONS_DIR / scope.name).glob("*.json"))
    for path in suites:
        disagreements = contract_bound_disagreements(read_suite(path), scope.usecase.sources)
        if disagreements:
            raise SuiteError(f"{path}: its bounds are not the source contracts': "
                             f"{'; '.join(disagreements)}")
    return [
        *(build_suite_check(scope, path) for path in suites),
        build_pii_check(scope, scope.usecase.data.table),
    ]
