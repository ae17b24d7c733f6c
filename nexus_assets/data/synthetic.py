"""Built-in synthetic source: a customer-churn table, one deterministic day at a time.

Each day holds `rows_per_day` customers with 10 numeric and 5 categorical features, some missing
values and a minority positive class (`churned`). From `drift.start_date` on, the named features
shift (`monthly_charges` up, `usage_gb` wider, `region` towards "south", `support_calls` up,
`contract` towards "monthly") and, with `label_shift`, churn depends more on price and less on
support calls.
Labels become known `label_delay_days` after the day they describe.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from nexus_core.config import SyntheticSource

NUMERIC = [
    "age",
    "tenure_months",
    "monthly_charges",
    "total_charges",
    "support_calls",
    "usage_gb",
    "last_login_days",
    "num_products",
    "discount_pct",
    "satisfaction_score",
]
CATEGORICAL = ["plan", "region", "payment_method", "contract", "device"]
ID, TIMESTAMP, TARGET = "customer_id", "event_time", "churned"

_PLANS = ["basic", "standard", "premium"]
_REGIONS = ["north", "south", "east", "west", "central"]
_PAYMENTS = ["card", "bank_transfer", "paypal", "invoice"]
_CONTRACTS = ["monthly", "annual", "two_year"]
_DEVICES = ["ios", "android", "web"]
# Chosen so that the positive rate lands near `positive_rate` before drift (checked in tests).
_BASE_LOGIT_OFFSET = -0.75


def generate_day(source: SyntheticSource, day: dt.date) -> pd.DataFrame:
    """All rows for one day; the same (seed, day) always gives the same frame."""
    rng = np.random.default_rng([source.seed, day.toordinal()])
    n = source.rows_per_day
    drift = _drift_strength(source, day)
    shifted = set(source.drift.features) if source.drift else set()

    def shift(name: str) -> float:
        return drift if name in shifted else 0.0

    plan = rng.choice(_PLANS, n, p=[0.5, 0.35, 0.15])
    region_p = np.array([0.2] * 5) + shift("region") * np.array([-0.1, 0.4, -0.1, -0.1, -0.1])
    region = rng.choice(_REGIONS, n, p=region_p / region_p.sum())
    payment = rng.choice(_PAYMENTS, n, p=[0.45, 0.25, 0.2, 0.1]).astype(object)
    contract_p = np.array([0.55, 0.3, 0.15]) + shift("contract") * np.array([0.3, -0.2, -0.1])
    contract = rng.choice(_CONTRACTS, n, p=contract_p / contract_p.sum())
    device = rng.choice(_DEVICES, n, p=[0.35, 0.4, 0.25])

    age = np.clip(rng.normal(44, 14, n), 18, 90).round()
    tenure = np.clip(rng.gamma(2.0, 14.0, n), 0, 120).round()
    plan_price = pd.Series(plan).map({"basic": 35.0, "standard": 65.0, "premium": 105.0}).to_numpy()
    monthly = np.clip(plan_price + rng.normal(0, 12, n) + 25 * shift("monthly_charges"), 10, 250).round(2)
    total = (monthly * tenure + rng.normal(0, 40, n)).clip(0).round(2)
    support = rng.poisson(1.4 + 1.5 * shift("support_calls"), n).astype(float)
    usage = (rng.lognormal(3.0, 0.6 + 0.4 * shift("usage_gb"), n)).round(2)
    last_login = rng.exponential(6.0, n).round()
    products = rng.integers(1, 6, n).astype(float)
    discount = np.clip(rng.normal(8, 7, n), 0, 50).round(1)
    satisfaction = np.clip(rng.normal(7 - 0.6 * support, 1.5), 1, 10).round()

    label_drift = drift if source.drift and source.drift.label_shift else 0.0
    logit = (
        _BASE_LOGIT_OFFSET
        + np.log(source.positive_rate / (1 - source.positive_rate))
        + (0.45 - 0.35 * label_drift) * (support - 1.4)
        - 0.03 * (tenure - 28)
        + (0.02 + 0.02 * label_drift) * (monthly - 60)
        - 0.35 * (satisfaction - 6)
        + 0.06 * (last_login - 6)
        - 0.04 * (discount - 8)
        + pd.Series(contract).map({"monthly": 0.9, "annual": -0.4, "two_year": -1.2}).to_numpy()
        + np.where(payment == "invoice", 0.5, 0.0)
    )
    churned = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype("int64")

    # Missing values are drawn after the label so they do not leak into it.
    total[rng.random(n) < 0.02] = np.nan
    satisfaction[rng.random(n) < 0.05] = np.nan
    payment[rng.random(n) < 0.01] = None

    start = pd.Timestamp(day)
    return pd.DataFrame(
        {
            ID: int(day.strftime("%Y%m%d")) * 1_000_000 + np.arange(n, dtype="int64"),
            TIMESTAMP: start + pd.to_timedelta(np.sort(rng.integers(0, 86_400, n)), unit="s"),
            "age": age,
            "tenure_months": tenure,
            "monthly_charges": monthly,
            "total_charges": total,
            "support_calls": support,
            "usage_gb": usage,
            "last_login_days": last_login,
            "num_products": products,
            "discount_pct": discount,
            "satisfaction_score": satisfaction,
            "plan": plan.astype(object),
            "region": region.astype(object),
            "payment_method": payment,
            "contract": contract.astype(object),
            "device": device.astype(object),
            TARGET: churned,
        }
    )


def delayed_labels(source: SyntheticSource, day: dt.date, as_of: dt.date) -> pd.DataFrame:
    """The labels of `day` as known on `as_of`: none until `label_delay_days` have passed."""
    if as_of < day + dt.timedelta(days=source.label_delay_days):
        return pd.DataFrame({ID: pd.Series(dtype="int64"), TARGET: pd.Series(dtype="int64")})
    return generate_day(source, day)[[ID, TARGET]]


def _drift_strength(source: SyntheticSource, day: dt.date) -> float:
    if source.drift is None or day < source.drift.start_date:
        return 0.0
    return source.drift.strength
