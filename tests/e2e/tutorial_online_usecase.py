"""The files a user adds for an online use case by following docs/EXTENDING.md: ``rides``, the
probability that a ride booking ends in a complaint, scored when the ride is booked.

Other names than fraud's everywhere: a rider (their phone number is personal data, pseudonymized
as ``rider_key``), a booking scored as it is made (its id sent as ``ride_id``, its time as
``at``), complaints filed one or two days after the ride (the labels). Declared features: the
fare (a row feature), the rider's rides and mean fare of the last day and week (an event clock)
and the share of the rider's rides of the week before complained about (a day clock).

``test_tutorial_online.py`` writes them into a copy of the project; nothing here is imported by
the pipeline. ``landing_files`` plays the ride-hailing platform's two systems (there is no
simulator): seeded numpy, a CSV per source and day.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

NAME = "rides"
EVENTS, LABELS = "ride_bookings", "ride_complaints"
SCORE = "complaint_probability"
ROW_FIELD, TIME_FIELD = "ride_id", "at"
"""The request fields of the booking's id and time (the contract's booking_id and booked_at)."""
FEATURES = ("fare", "rider_rides_1day", "rider_avg_fare_1day", "rider_rides_7day",
            "rider_avg_fare_7day", "rider_complaint_rate_7day")
FIRST_DAY = date(2018, 4, 1)
"""The first business day: BLUEPRINT_PARTITIONS_START's default, the first partition."""
DAYS = 30
"""Days delivered before the service starts."""
HELD_BACK_DAYS = 2
"""Days after them, lived through the running service, then delivered."""
BOOKINGS_PER_DAY = 160
RIDERS = 300
SEED = 23

DECLARATION = """\
# The online tutorial's use case (docs/EXTENDING.md): will a ride booking end in a complaint?
# Scored online, when the ride is booked.
name: rides
task: binary_classification
description: >-
  Score every ride booking as it is made: the probability that the rider complains about it.

sources:
  ride_bookings:           # the booking system: one CSV a day
    version: 1
    format: csv
    key: [booking_id]
    columns:
      - name: booking_id
        pattern: "R[0-9]{7}"    # an id declares its shape
        description: The booking's id (R + 7 digits).
      - name: booked_at
        type: timestamp
        rules: [on_partition_date]
        description: When the ride was booked (local time, no time zone).
      - name: rider_phone
        pii: true
        pseudonym: rider_key
        description: The rider's phone number; replaced by its rider_key on entry.
      - {name: fare, type: double, rules: [finite, non_negative], description: The fare quoted.}
  ride_complaints:         # the support desk: the complaints filed that day
    version: 1
    format: csv
    key: [booking_id]
    columns:
      - {name: booking_id, pattern: "R[0-9]{7}", description: The booking complained about.}
      - name: filed_at
        type: timestamp
        rules: [on_partition_date]
        description: When the complaint was filed (local time).

data:
  table: ride_training_set
  features_table: ride_features
  row_id: booking_id
  event_time: booked_at
  partition_date: booking_date
  entities:
    rider: rider_key

label:
  column: complained
  known_at: complaint_date
  source: ride_complaints
  maturity: 2d
  time: filed_at           # complaint_date is its day

features:
  declared:
    events: ride_bookings
    row:
      - {name: fare}
    windowed:
      rider:               # the rider's bookings of (t - w, t], this one included
        entity: rider
        clock: event
        windows: [1d, 7d]
        aggregations:
          - {name: "rider_rides_{window}", op: count}
          - {name: "rider_avg_fare_{window}", op: mean, of: fare}
      rider_days:          # the rider's 7 whole days before the booking's day
        entity: rider
        clock: day
        windows: [7d]
        aggregations:
          - {name: "rider_complaint_rate_{window}", op: label_rate}
  train_on:
    - fare
    - rider_rides_1day
    - rider_avg_fare_1day
    - rider_rides_7day
    - rider_avg_fare_7day
    - rider_complaint_rate_7day

protocol:
  train: 5d
  delay: 2d
  test: 3d
  folds: 2
  fold_step: 3d

models:
  name: ride_complaint_predictor
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
    - ride_features:expectations_suite
    - ride_training_set:expectations_suite
    - ride_training_set:no_personal_data

serving:
  mode: online
  score: complaint_probability
  request:
    rename: {booking_id: ride_id, booked_at: at}
    example:
      ride_id: R9000001
      fare: 14.5

monitoring:
  traffic: prediction_log
  drift_share_threshold: 0.5
  decay: {metric: average_precision, drop: 0.1}
  min_post_drift_days: 3
"""

WORKSPACE_ENTRY = """\
  - python_module:
      module_name: orchestration.definitions
      attribute: rides
      location_name: rides
      working_directory: .
"""

SOURCES_YML = """\
version: 2

# The rides use case's raw zone, written by the ingestion assets (docs/DATA_CONTRACTS.md).
# Named rides_raw: dbt source names are project-wide.
sources:
  - name: rides_raw
    description: Immutable daily Parquet snapshots of the booking system and the support desk.
    tables:
      - name: ride_bookings
        description: One row per ride booking, partitioned by the day it was made.
        meta:
          dagster:
            asset_key: ["raw_ride_bookings"]
          external_location: >-
            read_parquet('raw/ride_bookings/date=*/data.parquet',
            hive_partitioning = true, union_by_name = true)
        columns:
          - name: booking_id
            description: The booking's id.
          - name: booked_at
            description: When the ride was booked.
          - name: rider_phone
            description: The rider's phone number. Personal data; never leaves staging.
          - name: fare
            description: The fare quoted.
      - name: ride_complaints
        description: One row per complaint, partitioned by the day it was filed.
        meta:
          dagster:
            asset_key: ["raw_ride_complaints"]
          external_location: >-
            read_parquet('raw/ride_complaints/date=*/data.parquet',
            hive_partitioning = true, union_by_name = true)
        columns:
          - name: booking_id
            description: The booking complained about.
          - name: filed_at
            description: When the complaint was filed.
"""

BOOKINGS_SQL = """\
with

source as (

    select * from {{ source('rides_raw', 'ride_bookings') }}

),

rider_keys as (

    {{ pseudonyms('source', 'rider_phone') }}

),

renamed as (

    -- the phone number is replaced by its pseudonym here
    select
        cast(source.booking_id as varchar) as booking_id,
        cast(source.booked_at as timestamp) as booked_at,
        cast(source.booked_at as date) as booking_date,
        rider_keys.pseudonym as rider_key,
        cast(source.fare as double) as fare

    from source
    left join rider_keys
        on source.rider_phone = rider_keys.original_value

)

select * from renamed
"""

COMPLAINTS_SQL = """\
with

source as (

    select * from {{ source('rides_raw', 'ride_complaints') }}

),

renamed as (

    select
        cast(booking_id as varchar) as booking_id,
        cast(filed_at as timestamp) as filed_at,
        cast(filed_at as date) as complaint_date

    from source

)

select * from renamed
"""

STAGING_YML = """\
version: 2

models:
  - name: stg_ride_bookings
    description: The ride bookings, the rider's phone number replaced by its pseudonym.
    columns:
      - name: booking_id
        description: The booking's id.
        data_tests: [not_null, unique]
      - name: booked_at
        description: When the ride was booked.
      - name: booking_date
        description: The day of the booking.
      - name: rider_key
        description: The rider's pseudonym (keyed HMAC of the phone number).
        data_tests: [not_null]
      - name: fare
        description: The fare quoted.
  - name: stg_ride_complaints
    description: The complaints, one per booking.
    columns:
      - name: booking_id
        description: The booking complained about.
        data_tests: [not_null, unique]
      - name: filed_at
        description: When the complaint was filed.
      - name: complaint_date
        description: The day the complaint was filed, from which it is known.
"""

RIDER_DAYS_SQL = """\
{#- The rider's history as of the start of each day they booked, as declared in
    orchestration/usecases/rides.yaml (features.declared.windowed.rider_days), rendered by
    dbt_project/macros/declared_features.sql. -#}
{{ declared_day_aggregates(
    'rides', 'rider_days',
    events=ref('stg_ride_bookings'),
    labels=ref('stg_ride_complaints'),
) }}
"""

INTERMEDIATE_YML = """\
version: 2

models:
  - name: int_rider_days_aggregated
    description: Each rider's bookings and complaints of the 7 days before each day they booked.
    columns:
      - name: rider_key
        description: The rider's pseudonym.
      - name: booking_date
        description: The day.
      - name: nb_tx
        description: The rider's bookings that day.
      - name: rider_complaint_rate_7day
        description: The share of the rider's bookings of the 7 days before complained about.
"""

FEATURES_SQL = """\
{#- One row per booking with its features, from what was known when it was made: declared in
    orchestration/usecases/rides.yaml (features.declared), rendered by
    dbt_project/macros/declared_features.sql; the scoring service computes the same. -#}
{{ declared_feature_mart(
    'rides',
    events=ref('stg_ride_bookings'),
    day_groups={'rider_days': ref('int_rider_days_aggregated')},
) }}
"""

TRAINING_SQL = """\
{#- ride_features plus the label and the day it became known. -#}
with

features as (

    select * from {{ ref('ride_features') }}

),

complaints as (

    select booking_id, filed_at, complaint_date from {{ ref('stg_ride_complaints') }}

),

final as (

    select
        features.*,
        case when complaints.booking_id is null then 0 else 1 end as complained,
        complaints.filed_at,
        complaints.complaint_date

    from features
    left join complaints
        on features.booking_id = complaints.booking_id

)

select * from final
"""

_MART_COLUMNS = """\
      - name: booking_id
        data_type: varchar
        constraints: [{type: not_null}]
        description: The booking's id.
      - name: booked_at
        data_type: timestamp
        constraints: [{type: not_null}]
        description: When the ride was booked; the decision uses nothing later.
      - name: booking_date
        data_type: date
        constraints: [{type: not_null}]
        description: The day of the booking.
      - name: rider_key
        data_type: varchar
        constraints: [{type: not_null}]
        description: The rider's pseudonym.
      - name: fare
        data_type: double
        constraints: [{type: not_null}]
        description: The fare quoted.
      - name: rider_rides_1day
        data_type: bigint
        constraints: [{type: not_null}]
        description: The rider's bookings of the last 24 hours, this one included.
      - name: rider_avg_fare_1day
        data_type: double
        constraints: [{type: not_null}]
        description: The rider's mean fare over those bookings.
      - name: rider_rides_7day
        data_type: bigint
        constraints: [{type: not_null}]
        description: The rider's bookings of the last 7 days, this one included.
      - name: rider_avg_fare_7day
        data_type: double
        constraints: [{type: not_null}]
        description: The rider's mean fare over those bookings.
      - name: rider_complaint_rate_7day
        data_type: double
        description: >
          The share of the rider's bookings of the 7 days before this one's day that they
          complained about, counting a complaint once it was filed before this day (0 with none).
"""

MARTS_YML = f"""\
version: 2

models:
  - name: ride_features
    config:
      contract: {{enforced: true}}
    description: What the model sees of each booking, without its outcome.
    columns:
{_MART_COLUMNS}
  - name: ride_training_set
    config:
      contract: {{enforced: true}}
    description: ride_features plus whether the rider complained, and when that became known.
    columns:
{_MART_COLUMNS}      - name: complained
        data_type: integer
        constraints: [{{type: not_null}}]
        description: 1 if the rider complained about the ride, else 0.
      - name: filed_at
        data_type: timestamp
        description: When the complaint was filed (null without one).
      - name: complaint_date
        data_type: date
        description: The day the complaint became known (null without one).
"""


def _suite(name: str, notes: str, expectations: list[tuple[str, dict]]) -> dict:
    return {"name": name, "meta": {"notes": notes},
            "expectations": [{"type": kind, "kwargs": kwargs} for kind, kwargs in expectations]}


FEATURES_SUITE = _suite(
    "ride_features",
    "Every booking has its features, within range.",
    [
        ("expect_table_row_count_to_be_between", {"min_value": 1}),
        ("expect_column_values_to_be_unique", {"column": "booking_id"}),
        ("expect_column_values_to_not_be_null", {"column": "rider_key"}),
        ("expect_column_values_to_be_between", {"column": "fare", "min_value": 0}),
        ("expect_column_values_to_be_between", {"column": "rider_rides_1day", "min_value": 1}),
        ("expect_column_values_to_be_between", {"column": "rider_rides_7day", "min_value": 1}),
        ("expect_column_values_to_be_between",
         {"column": "rider_complaint_rate_7day", "min_value": 0, "max_value": 1}),
    ],
)
TRAINING_SUITE = _suite(
    "ride_training_set",
    "Labels present and 0/1, a plausible complaint rate.",
    [
        ("expect_table_row_count_to_be_between", {"min_value": 1}),
        ("expect_column_values_to_be_in_set", {"column": "complained", "value_set": [0, 1]}),
        ("expect_column_mean_to_be_between",
         {"column": "complained", "min_value": 0.01, "max_value": 0.6}),
    ],
)

MODELS = f"dbt_project/models/{NAME}"
FILES = {
    f"orchestration/usecases/{NAME}.yaml": DECLARATION,
    f"{MODELS}/staging/_{NAME}_raw__sources.yml": SOURCES_YML,
    f"{MODELS}/staging/_staging__models.yml": STAGING_YML,
    f"{MODELS}/staging/stg_ride_bookings.sql": BOOKINGS_SQL,
    f"{MODELS}/staging/stg_ride_complaints.sql": COMPLAINTS_SQL,
    f"{MODELS}/intermediate/_intermediate__models.yml": INTERMEDIATE_YML,
    f"{MODELS}/intermediate/int_rider_days_aggregated.sql": RIDER_DAYS_SQL,
    f"{MODELS}/marts/_marts__models.yml": MARTS_YML,
    f"{MODELS}/marts/ride_features.sql": FEATURES_SQL,
    f"{MODELS}/marts/ride_training_set.sql": TRAINING_SQL,
}
"""The new files of the use case (its GX suites are ``SUITES``), by path in the project."""
SUITES = {f"expectations/{NAME}/{suite['name']}.json": suite
          for suite in (FEATURES_SUITE, TRAINING_SUITE)}


@dataclass(frozen=True)
class RideWorld:
    """What the two systems deliver, every day: bookings and complaints in contract columns."""

    bookings: pd.DataFrame
    complaints: pd.DataFrame

    def on(self, source: str, day: date) -> pd.DataFrame:
        """The rows of ``source`` (``EVENTS`` or ``LABELS``) of business day ``day``."""
        frame, column = ((self.bookings, "booked_at") if source == EVENTS
                         else (self.complaints, "filed_at"))
        return frame[frame[column].dt.date == day]


def world() -> RideWorld:
    """``DAYS + HELD_BACK_DAYS`` days of bookings and the complaints filed in them.

    A few riders complain often, and every rider more about dear rides: the rider's complaint
    rate and the fare carry the signal. Some riders book two rides at the very same second (for
    a friend): they count for each other, online as offline.
    """
    rng = np.random.default_rng(SEED)
    phones = [f"+44 7700 9{n:05d}" for n in rng.choice(100_000, RIDERS, replace=False)]
    activity = rng.pareto(1.5, RIDERS) + 0.2
    activity /= activity.sum()
    complainer = rng.random(RIDERS) < 0.1
    bookings, complaints = [], []
    for offset in range(DAYS + HELD_BACK_DAYS):
        day = datetime.combine(FIRST_DAY + timedelta(days=offset), datetime.min.time())
        seconds = np.sort(rng.integers(0, 24 * 3600, BOOKINGS_PER_DAY))
        riders = rng.choice(RIDERS, BOOKINGS_PER_DAY, p=activity)
        for pair in range(5, BOOKINGS_PER_DAY, 40):  # two rides at once, by one rider
            seconds[pair], riders[pair] = seconds[pair - 1], riders[pair - 1]
        fares = np.round(rng.lognormal(np.log(15), 0.5, BOOKINGS_PER_DAY), 2)
        risk = 1 / (1 + np.exp(-(-4.0 + 2.5 * complainer[riders] + 0.05 * fares)))
        for i in range(BOOKINGS_PER_DAY):
            booking_id = f"R{offset * BOOKINGS_PER_DAY + i:07d}"
            booked_at = day + timedelta(seconds=int(seconds[i]))
            bookings.append((booking_id, booked_at, phones[riders[i]], float(fares[i])))
            if rng.random() < risk[i]:
                filed_at = day + timedelta(days=int(rng.integers(1, 3)),
                                           seconds=int(rng.integers(0, 24 * 3600)))
                complaints.append((booking_id, filed_at))
    last = datetime.combine(FIRST_DAY + timedelta(days=DAYS + HELD_BACK_DAYS), datetime.min.time())
    return RideWorld(
        pd.DataFrame(bookings, columns=["booking_id", "booked_at", "rider_phone", "fare"]),
        pd.DataFrame([c for c in complaints if c[1] < last],
                     columns=["booking_id", "filed_at"]).sort_values("filed_at"),
    )


def landing_files(rides: RideWorld, landing: Path, days: range) -> list[Path]:
    """Each source's CSV of each day of ``days`` (offsets from ``FIRST_DAY``), delivered at 1 am
    the next day, named as docs/DATA_CONTRACTS.md says."""
    written = []
    for offset in days:
        day = FIRST_DAY + timedelta(days=offset)
        delivered = datetime.combine(day + timedelta(days=1), datetime.min.time()).replace(hour=1)
        for source in (EVENTS, LABELS):
            folder = landing / source
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{source}_{day.isoformat()}__d{delivered:%Y%m%dT%H%M%S}.csv"
            rides.on(source, day).to_csv(path, index=False, date_format="%Y-%m-%d %H:%M:%S")
            written.append(path)
    return written
