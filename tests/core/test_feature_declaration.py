"""Features declared once: the declaration's form, its validation, and what it resolves to (the
names dbt's macros render and the history the online path keeps)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from orchestration.lib.core.feature_declaration import ResolvedFeatures, window_suffix
from orchestration.lib.core.usecase import load_usecase
from orchestration.settings import USECASES_DIR
from tests.core.test_usecase import assert_refused

GROUPS = "features__declared__windowed"


def fraud() -> ResolvedFeatures:
    resolved = load_usecase("fraud", USECASES_DIR, environ={}).resolved_features()
    assert resolved is not None
    return resolved


def test_fraud_declares_every_feature_its_models_train_on_once():
    usecase = load_usecase("fraud", USECASES_DIR, environ={})
    names = usecase.resolved_features().names
    assert len(names) == len(set(names)) == 23
    assert set(names) == set(usecase.features.train_on)
    assert names[:3] == ["amount", "tx_during_weekend", "tx_during_night"]
    assert "card_amount_ratio_30day" in names  # {horizon}: the card group's widest window
    assert [f"terminal_recent_risk_{w}day" in names for w in (1, 7, 30)] == [True] * 3


def test_a_day_group_reads_from_its_farthest_delayed_window_and_an_event_group_from_its_widest():
    features = fraud()
    (card,) = features.event_groups
    (terminal,) = features.day_groups
    assert card["horizon_microseconds"] == 30 * 86_400_000_000
    assert terminal["spans"] == [
        {"delay_days": d, "days": w} for d, w in [(0, 1), (0, 7), (0, 30), (7, 1), (7, 7), (7, 30)]
    ]
    assert terminal["horizon_days"] == 37
    starts = features.history_starts()
    at = datetime(2024, 3, 31, 23, 59)
    assert starts["card_key"](at) == at - timedelta(days=30)
    assert starts["terminal_id"](at) == datetime(2024, 2, 23)  # the start of D - 37
    assert features.lookback_days == 38


def test_resolved_features_round_trip_and_give_dbt_the_same_vars_every_time():
    features = fraud()
    assert ResolvedFeatures.from_dict(features.to_dict()) == features
    assert features.dbt_vars("fraud") == fraud().dbt_vars("fraud")
    assert load_usecase("fraud", USECASES_DIR, environ={}).dbt_arguments() == [
        "--vars", features.dbt_vars("fraud")
    ]


def test_a_use_case_without_declared_features_passes_dbt_nothing():
    churn = load_usecase("churn", USECASES_DIR, environ={})
    assert churn.resolved_features() is None and churn.dbt_arguments() == []


@pytest.mark.parametrize(
    ("window", "suffix"),
    [(timedelta(days=7), "7day"), (timedelta(hours=12), "12hour"),
     (timedelta(minutes=90), "90minute"), (timedelta(days=2, hours=1), "49hour")],
)
def test_a_window_reads_in_a_name_in_its_largest_whole_unit(window, suffix):
    assert window_suffix(window) == suffix


@pytest.mark.parametrize(
    ("changes", "field", "says"),
    [
        ({f"{GROUPS}__card__aggregations__0__op": "label_count"}, "windowed.card",
         "day clock only"),
        ({f"{GROUPS}__card__aggregations__1__of": None}, "windowed.card", "needs `of`"),
        ({f"{GROUPS}__card__aggregations__0__name": "card_nb_tx"}, "windowed.card",
         "{window}"),
        ({f"{GROUPS}__card__aggregations__0__delay": "1d"}, "windowed.card",
         "day clock's windows only"),
        ({f"{GROUPS}__terminal__windows": ["1d", "12h"]}, "windowed.terminal", "whole days"),
        ({f"{GROUPS}__terminal__aggregations__0__op": "mean",
          f"{GROUPS}__terminal__aggregations__0__of": "amount"}, "windowed.terminal",
         "counts events and labels only"),
        ({f"{GROUPS}__card__windows": ["1d", "1d"]}, "windowed.card", "listed twice"),
        ({f"{GROUPS}__card__entity": "merchant"}, "windowed.card.entity", "not an entity"),
        ({"features__declared__events": "payments"}, "features.declared.events",
         "not a declared source"),
        ({f"{GROUPS}__terminal__aggregations__2__name": "card_nb_tx_{window}"},
         "features.declared", "given twice"),
        ({"features__declared": None}, "features.declared", "declare them"),
        ({f"{GROUPS}__card__aggregations__1__of": "card_number"}, "windowed.card",
         "not a number column"),
        ({f"{GROUPS}__card__aggregations__1__of": "terminal_id"}, "windowed.card",
         "not a number column"),
        ({f"{GROUPS}__card__earlier__0__otherwise": float("nan")}, "otherwise", "finite"),
        ({"data__entities__card": "card_hash"}, "windowed.card.entity", "not a column"),
        ({"serving__request__rename": {"tx_datetime": "amount"}}, "serving.request.rename",
         "no other column has"),
        ({"data__event_time": "tx_date"}, "data.event_time", "not a timestamp"),
        ({"features__declared__row__1__name": "terminal_id"}, "features.declared.row",
         "not an id"),
        ({"features__declared__row__0__name": "merchant"}, "features.declared.row",
         "must name a column"),
    ],
)
def test_a_bad_feature_declaration_is_an_error_naming_the_file_and_the_field(
    tmp_path, changes, field, says
):
    assert_refused(tmp_path, changes, field, says)
