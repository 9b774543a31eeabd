"""Great Expectations 1.x suites stored as JSON, run on DataFrames in an ephemeral context.

GX is imported inside the functions: importing it costs seconds, and only quality checks need it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd


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
