"""The synthetic source is realistic, deterministic per day, drifts on schedule and delays its labels."""

import datetime as dt

import pandas as pd

from nexus_assets.data.synthetic import CATEGORICAL, NUMERIC, TARGET, delayed_labels, generate_day
from nexus_core.config import DriftScenario, SyntheticSource

SOURCE = SyntheticSource(kind="synthetic", seed=3, rows_per_day=4000)
DAY = dt.date(2026, 1, 10)


def test_same_seed_and_day_give_the_same_rows():
    pd.testing.assert_frame_equal(generate_day(SOURCE, DAY), generate_day(SOURCE, DAY))
    assert not generate_day(SOURCE, DAY).equals(generate_day(SOURCE, DAY + dt.timedelta(days=1)))
    other_seed = SOURCE.model_copy(update={"seed": 4})
    assert not generate_day(SOURCE, DAY)["age"].equals(generate_day(other_seed, DAY)["age"])


def test_rows_look_like_a_real_imbalanced_table():
    frame = generate_day(SOURCE, DAY)
    assert len(NUMERIC) + len(CATEGORICAL) >= 10
    assert all(pd.api.types.is_numeric_dtype(frame[c]) for c in NUMERIC)
    assert all(frame[c].dtype == object for c in CATEGORICAL)
    assert frame[["total_charges", "satisfaction_score", "payment_method"]].isna().any().all()
    assert 0.10 < frame[TARGET].mean() < 0.22
    assert frame["customer_id"].is_unique
    assert (frame["event_time"].dt.date == DAY).all()


def test_drift_shifts_named_features_and_labels_from_its_start_date():
    drift_day = dt.date(2026, 2, 1)
    drifting = SOURCE.model_copy(update={"drift": DriftScenario(start_date=drift_day, features=["monthly_charges"])})
    before = drift_day - dt.timedelta(days=1)
    pd.testing.assert_frame_equal(generate_day(drifting, before), generate_day(SOURCE, before))
    shifted, plain = generate_day(drifting, drift_day), generate_day(SOURCE, drift_day)
    assert shifted["monthly_charges"].mean() - plain["monthly_charges"].mean() > 20
    assert shifted["usage_gb"].equals(plain["usage_gb"])  # not named, so not shifted
    assert shifted[TARGET].mean() > plain[TARGET].mean() + 0.05


def test_labels_arrive_after_the_configured_delay():
    delayed = SOURCE.model_copy(update={"label_delay_days": 3})
    assert delayed_labels(delayed, DAY, as_of=DAY + dt.timedelta(days=2)).empty
    labels = delayed_labels(delayed, DAY, as_of=DAY + dt.timedelta(days=3))
    pd.testing.assert_frame_equal(labels, generate_day(delayed, DAY)[["customer_id", TARGET]])
