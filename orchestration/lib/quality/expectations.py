"""Great Expectations 1.x suites stored as JSON, run on DataFrames in an ephemeral context.

GX is imported inside the functions: importing it costs seconds, and only quality checks need it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from orchestration.lib.core.sources import Source


class SuiteError(ValueError):
    """A suite file that cannot be used as written."""


@dataclass(frozen=True)
class SuiteResult:
    suite_name: str
    success: bool
    evaluated: int
    failures: list[dict] = field(default_factory=list)
    """One entry per failed expectation: type, column, unexpected count and a few examples."""


def read_suite(path: Path) -> dict:
    """Load a suite JSON (``{"name": ..., "expectations": [{"type": ..., "kwargs": ...}]}``)."""
    try:
        spec = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise SuiteError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(spec.get("expectations"), list) or not spec["expectations"]:
        raise SuiteError(f"{path}: needs a non-empty 'expectations' list")
    return spec


def contract_bound_disagreements(spec: dict, sources: Mapping[str, Source]) -> list[str]:
    """Where a suite's range of a column says other numbers than the source contract that
    delivers the column (its ``min``/``max``; ``non_negative`` is a minimum of 0): the bounds
    are declared once, in the contract, and a suite that checks them must say the same. A
    column no contract bounds, or one several sources deliver with other bounds, is the
    suite's own business."""
    bounds: dict[str, set[tuple[float | None, float | None]]] = {}
    for source in sources.values():
        for column in source.columns:
            if column.type == "double" and not column.pii:
                lowest = column.min
                if "non_negative" in column.rules:
                    lowest = max(0.0, lowest or 0.0)
                bounds.setdefault(column.name, set()).add((lowest, column.max))
    disagreements = []
    for expectation in spec["expectations"]:
        kwargs = expectation.get("kwargs", {})
        declared = bounds.get(kwargs.get("column"), set())
        if expectation.get("type") != "expect_column_values_to_be_between" or len(declared) != 1:
            continue
        contract = next(iter(declared))
        suite = (kwargs.get("min_value"), kwargs.get("max_value"))
        if tuple(None if v is None else float(v) for v in suite) != contract:
            disagreements.append(
                f"{kwargs['column']}: the suite checks {list(suite)}, the contract declares "
                f"{list(contract)}"
            )
    return disagreements


def validate_frame(frame: pd.DataFrame, suite_path: Path) -> SuiteResult:
    """Validate ``frame`` against the suite at ``suite_path``; every expectation must load."""
    import great_expectations as gx

    spec = read_suite(suite_path)
    name = spec.get("name", suite_path.stem)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False}
    try:
        suite = gx.ExpectationSuite(name=name, expectations=spec["expectations"])
    except Exception as error:  # GX raises several types for a bad expectation
        raise SuiteError(f"{suite_path}: {error}") from error
    # GX may log and drop an expectation it cannot parse: count what survived.
    if len(suite.expectations) != len(spec["expectations"]):
        raise SuiteError(
            f"{suite_path}: {len(spec['expectations'])} expectations written, "
            f"{len(suite.expectations)} loaded"
        )
    suite = context.suites.add(suite)
    batch_definition = (
        context.data_sources.add_pandas("frames")
        .add_dataframe_asset(name)
        .add_batch_definition_whole_dataframe("whole")
    )
    validation = context.validation_definitions.add(
        gx.ValidationDefinition(data=batch_definition, suite=suite, name=f"{name}_validation")
    )
    outcome = validation.run(batch_parameters={"dataframe": frame})
    failures = []
    for result in outcome.results:
        if result.success:
            continue
        details = result.result or {}
        failures.append(
            {
                "expectation": result.expectation_config.type,
                "column": result.expectation_config.kwargs.get("column"),
                "unexpected_count": details.get("unexpected_count"),
                "examples": [str(v) for v in (details.get("partial_unexpected_list") or [])[:5]],
                "observed": str(details.get("observed_value", "")),
                "error": (result.exception_info or {}).get("exception_message"),
            }
        )
    return SuiteResult(
        suite_name=name,
        success=bool(outcome.success),
        evaluated=len(outcome.results),
        failures=failures,
    )
