"""The files a user adds for a third use case by following docs/EXTENDING.md: ``loans``, the
probability that a loan application defaults, one source, one feature, one model family.

``test_tutorial.py`` writes them into a copy of the project; nothing here is imported by the
pipeline. ``landing_files`` plays the lender's application system (there is no simulator).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np

NAME = "loans"
SOURCE = "loan_applications"
FIRST_DAY = date(2018, 4, 1)
"""The first business day delivered: BLUEPRINT_PARTITIONS_START's default, the first partition."""
DAYS = 30
ROWS_PER_DAY = 200
OUTCOME_DAYS = 3
"""How long after its application a loan's outcome is known (the label's maturity)."""
SEED = 11

DECLARATION = """\
# The tutorial's use case (docs/EXTENDING.md): will a loan application default? Batch only.
name: loans
task: binary_classification
description: >-
  Score every loan application of the day: the probability that it defaults, and the day's
  review list of the riskiest applicants.

sources:
  loan_applications:       # the lender's application system, one CSV a day
    version: 1
    format: csv
    key: [application_id]
    # A tutorial shortcut: the file of day d is delivered once the outcomes of its loans are
    # known (OUTCOME_DAYS later), so the label comes in the same file as the application.
    columns:
      - {name: application_id, pattern: "L[0-9]{7}"}   # an id declares its shape
      - {name: applicant_id, pattern: "P[0-9]{6}"}
      - {name: applied_at, type: timestamp, rules: [on_partition_date]}
      - {name: email, pii: true}
      - {name: amount, type: double, rules: [finite, non_negative]}
      - {name: income, type: double, rules: [finite, non_negative]}
      - {name: defaulted}
      - {name: outcome_date, type: date}

data:
  table: loan_training_set
  features_table: loan_features
  row_id: application_id
  event_time: applied_at
  partition_date: application_date
  entities:
    applicant: applicant_id

label:
  column: defaulted
  known_at: outcome_date           # 3 days after the application
  source: loan_applications
  maturity: 3d

features:
  train_on:
    - amount_to_income

# 30 days of data: a final split of 5 + 3 + 3 days, two folds 3 days apart before it, and the
# label's 3 days of maturity fit.
protocol:
  train: 5d
  delay: 3d
  test: 3d
  folds: 2
  fold_step: 3d

models:
  name: loan_default_predictor
  seed: 0
  families:
    logistic_regression:
      estimator: sklearn.linear_model.LogisticRegression
      fixed: {max_iter: 1000}
      scale: true
      grid: {C: [1.0]}

metrics:
  auc_roc: {kind: auc_roc}
  average_precision: {kind: average_precision}
selection_metric: average_precision

gate:
  primary: {metric: average_precision, margin: 0.005, floor: 0.05}
  guards:
    - {metric: auc_roc, tolerance: 0.02}
  required_checks:
    - loan_features:expectations_suite
    - loan_training_set:expectations_suite
    - loan_training_set:no_personal_data

decision_budget:
  per_day: 20
  entity: applicant

serving:
  mode: batch
  score: default_probability

monitoring:
  traffic: batch_scores
  drift_share_threshold: 0.5
  decay: {metric: average_precision, drop: 0.1}
  min_post_drift_days: 3
"""

WORKSPACE_ENTRY = """\
  - python_module:
      module_name: orchestration.definitions
      attribute: loans
      location_name: loans
      working_directory: .
"""

SOURCES_YML = """\
version: 2

# The loans use case's raw zone, written by the ingestion assets (docs/DATA_CONTRACTS.md).
# Named loans_raw: dbt source names are project-wide.
sources:
  - name: loans_raw
    description: Immutable daily Parquet snapshots of the lender's application system.
    tables:
      - name: loan_applications
        description: One row per loan application, partitioned by the day it was made.
        meta:
          dagster:
            asset_key: ["raw_loan_applications"]
          external_location: >-
            read_parquet('raw/loan_applications/date=*/data.parquet',
            hive_partitioning = true, union_by_name = true)
        columns:
          - name: application_id
            description: The application's id (L + 7 digits).
          - name: applicant_id
            description: The applicant's id (P + 6 digits). Not personal data.
          - name: applied_at
            description: When the application was made.
          - name: email
            description: The applicant's e-mail address. Personal data; never leaves staging.
          - name: amount
            description: The amount asked for.
          - name: income
            description: The applicant's yearly income.
          - name: defaulted
            description: 1 if the loan defaulted, else 0.
          - name: outcome_date
            description: The day the outcome became known.
"""

STAGING_SQL = """\
with

source as (

    select * from {{ source('loans_raw', 'loan_applications') }}

),

renamed as (

    -- email is dropped here on purpose
    select
        cast(application_id as varchar) as application_id,
        cast(applicant_id as varchar) as applicant_id,
        cast(applied_at as timestamp) as applied_at,
        cast(applied_at as date) as application_date,
        cast(amount as double) as amount,
        cast(income as double) as income,
        cast(defaulted as integer) as defaulted,
        cast(outcome_date as date) as outcome_date

    from source

)

select * from renamed
"""

STAGING_YML = """\
version: 2

models:
  - name: stg_loan_applications
    description: The loan applications without personal data (the e-mail is dropped).
    columns:
      - name: application_id
        description: The application's id.
        data_tests: [not_null, unique]
      - name: applicant_id
        description: The applicant's id.
        data_tests: [not_null]
      - name: applied_at
        description: When the application was made.
      - name: application_date
        description: The day of the application.
      - name: amount
        description: The amount asked for.
      - name: income
        description: The applicant's yearly income.
      - name: defaulted
        description: 1 if the loan defaulted, else 0.
        data_tests:
          - accepted_values:
              arguments:
                values: [0, 1]
                quote: false
      - name: outcome_date
        description: The day the outcome became known.
"""

FEATURES_SQL = """\
{#- One row per application, its features known when it was made (applied_at). -#}
with

applications as (

    select * from {{ ref('stg_loan_applications') }}

),

final as (

    select
        application_id,
        applicant_id,
        application_date,
        applied_at,
        case when income > 0 then amount / income else 0.0 end as amount_to_income

    from applications

)

select * from final
"""

TRAINING_SQL = """\
{#- loan_features plus the label and the day it became known. -#}
with

features as (

    select * from {{ ref('loan_features') }}

),

outcomes as (

    select application_id, defaulted, outcome_date from {{ ref('stg_loan_applications') }}

),

final as (

    select
        features.*,
        outcomes.defaulted,
        outcomes.outcome_date

    from features
    inner join outcomes
        on features.application_id = outcomes.application_id

)

select * from final
"""

_MART_COLUMNS = """\
      - name: application_id
        data_type: varchar
        constraints: [{type: not_null}]
        description: The application's id.
      - name: applicant_id
        data_type: varchar
        constraints: [{type: not_null}]
        description: The applicant's id.
      - name: application_date
        data_type: date
        constraints: [{type: not_null}]
        description: The day of the application.
      - name: applied_at
        data_type: timestamp
        constraints: [{type: not_null}]
        description: When the application was made; the decision uses nothing later.
      - name: amount_to_income
        data_type: double
        constraints: [{type: not_null}]
        description: >
          The amount asked for divided by the yearly income (0 without income). The higher,
          the heavier the loan weighs on the applicant.
"""

MARTS_YML = f"""\
version: 2

models:
  - name: loan_features
    config:
      contract: {{enforced: true}}
    description: What the model sees of each application, without its outcome.
    columns:
{_MART_COLUMNS}
  - name: loan_training_set
    config:
      contract: {{enforced: true}}
    description: loan_features plus the outcome and the day it became known.
    columns:
{_MART_COLUMNS}      - name: defaulted
        data_type: integer
        constraints: [{{type: not_null}}]
        description: 1 if the loan defaulted, else 0.
      - name: outcome_date
        data_type: date
        constraints: [{{type: not_null}}]
        description: The day the outcome became known.
"""


def _suite(name: str, notes: str, expectations: list[tuple[str, dict]]) -> dict:
    return {"name": name, "meta": {"notes": notes},
            "expectations": [{"type": kind, "kwargs": kwargs} for kind, kwargs in expectations]}


FEATURES_SUITE = _suite(
    "loan_features",
    "Every application has its feature, within range.",
    [
        ("expect_table_row_count_to_be_between", {"min_value": 1}),
        ("expect_column_values_to_be_unique", {"column": "application_id"}),
        ("expect_column_values_to_not_be_null", {"column": "amount_to_income"}),
        ("expect_column_values_to_be_between",
         {"column": "amount_to_income", "min_value": 0, "max_value": 10}),
    ],
)
TRAINING_SUITE = _suite(
    "loan_training_set",
    "Labels present and 0/1, a plausible default rate, every outcome known after its day.",
    [
        ("expect_table_row_count_to_be_between", {"min_value": 1}),
        ("expect_column_values_to_be_in_set", {"column": "defaulted", "value_set": [0, 1]}),
        ("expect_column_mean_to_be_between",
         {"column": "defaulted", "min_value": 0.01, "max_value": 0.6}),
        ("expect_column_pair_values_a_to_be_greater_than_b",
         {"column_A": "outcome_date", "column_B": "application_date", "or_equal": False}),
    ],
)

MODELS = f"dbt_project/models/{NAME}"
FILES = {
    f"orchestration/usecases/{NAME}.yaml": DECLARATION,
    f"{MODELS}/staging/_{NAME}_raw__sources.yml": SOURCES_YML,
    f"{MODELS}/staging/_staging__models.yml": STAGING_YML,
    f"{MODELS}/staging/stg_loan_applications.sql": STAGING_SQL,
    f"{MODELS}/marts/_marts__models.yml": MARTS_YML,
    f"{MODELS}/marts/loan_features.sql": FEATURES_SQL,
    f"{MODELS}/marts/loan_training_set.sql": TRAINING_SQL,
}
"""The new files of the use case (its GX suites are ``SUITES``), by path in the project."""
SUITES = {f"expectations/{NAME}/{suite['name']}.json": suite
          for suite in (FEATURES_SUITE, TRAINING_SUITE)}


def landing_files(landing: Path) -> list[Path]:
    """``DAYS`` days of applications, one CSV a day, named as docs/DATA_CONTRACTS.md says.

    The default probability rises with the amount-to-income ratio, so a logistic regression
    learns it.
    """
    rng = np.random.default_rng(SEED)
    folder = landing / SOURCE
    folder.mkdir(parents=True, exist_ok=True)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    written = []
    for offset in range(DAYS):
        day = FIRST_DAY + timedelta(days=offset)
        seconds = np.sort(rng.integers(0, 24 * 3600, ROWS_PER_DAY))
        income = np.round(rng.lognormal(np.log(50_000), 0.4, ROWS_PER_DAY), 2)
        ratio = rng.uniform(0.05, 1.5, ROWS_PER_DAY)
        defaulted = rng.random(ROWS_PER_DAY) < 1 / (1 + np.exp(-(4 * ratio - 4.5)))
        applicants = rng.integers(0, 2_000, ROWS_PER_DAY)
        lines = ["application_id,applicant_id,applied_at,email,amount,income,defaulted,"
                 "outcome_date"]
        for i in range(ROWS_PER_DAY):
            applied_at = datetime.combine(day, datetime.min.time()) + timedelta(
                seconds=int(seconds[i]))
            email = "".join(rng.choice(letters, 8)) + "@example.com"
            lines.append(",".join([
                f"L{offset * ROWS_PER_DAY + i:07d}", f"P{applicants[i]:06d}",
                applied_at.strftime("%Y-%m-%d %H:%M:%S"), email,
                f"{income[i] * ratio[i]:.2f}", f"{income[i]:.2f}", str(int(defaulted[i])),
                (day + timedelta(days=OUTCOME_DAYS)).isoformat(),
            ]))
        delivered = datetime.combine(day, datetime.min.time()) + timedelta(
            days=OUTCOME_DAYS, hours=6)
        path = folder / f"{SOURCE}_{day.isoformat()}__d{delivered:%Y%m%dT%H%M%S}.csv"
        path.write_text("\n".join(lines) + "\n")
        written.append(path)
    return written

