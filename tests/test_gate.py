"""The promotion gate's rules (`gate.RULES`, read top to bottom), each on fixed numbers: the rule that refuses is the
first one that applies, and a challenger no rule refuses is promoted with its evidence."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nexus_assets.training.backtest import FOLD_COLUMNS, Backtest
from nexus_assets.training.gate import RULES, Evidence, Rule, decide, guardrail_table
from nexus_assets.training.metrics import CLASSIFICATION, REGRESSION

AUC, ACCURACY, RMSE = CLASSIFICATION["roc_auc"], CLASSIFICATION["accuracy"], REGRESSION["rmse"]
ABSOLUTE = Rule(margin=0.002, relative=False, slice_tolerance=0.05, max_holdout_drop=0.25, instability="refuse")
RELATIVE = Rule(margin=0.01, relative=True, slice_tolerance=0.02, max_holdout_drop=0.25, instability="refuse")
NO_SLICES = pd.DataFrame()


def _backtest(gains: list[tuple[float, float, float]]) -> Backtest:
    """Folds of a first promotion's backtest: (gain, low, high) each, against a baseline scoring 0.5."""
    rows = [[i + 1, 100 * (i + 2), 50, 0.5 + gain, 0.5, gain, low, high] for i, (gain, low, high) in enumerate(gains)]
    folds = pd.DataFrame(rows, columns=FOLD_COLUMNS)
    mean = folds["gain"].mean()
    return Backtest(folds, (mean - 0.03, mean + 0.03))


# (case, decide's arguments, the rule that refuses or None for a promotion, words of the reason)
CASES = [
    ("win", (AUC, ABSOLUTE, 0.86, 0.83, "champion v1", NO_SLICES, (0.015, 0.045)), {}, None,
     "roc_auc 0.8600 beats champion v1 0.8300 by +0.0300 (95% interval +0.0150 to +0.0450; margin 0.002)"),
    ("first model against the baseline", (AUC, ABSOLUTE, 0.79, 0.5, "baseline", NO_SLICES, (0.2, 0.35)), {}, None,
     "roc_auc 0.7900 beats baseline 0.5000 by +0.2900"),
    ("no score", (AUC, ABSOLUTE, np.nan, 0.5, "baseline", NO_SLICES, (np.nan, np.nan)), {}, RULES[0],
     "holdout roc_auc cannot be computed (challenger nan, baseline 0.5): the holdout lacks what the metric needs; "
     "choose another model.selection_metric"),
    ("tie", (RMSE, RELATIVE, 99.5, 100.0, "champion v1", NO_SLICES, (0.2, 0.8)), {}, RULES[2],
     "rmse 99.5000 vs champion v1 100.0000: gain +0.5000 (95% interval +0.2000 to +0.8000) is a tie within the "
     "margin 1 (1.00% of the reference's score)"),
    ("loss", (AUC, ABSOLUTE, 0.80, 0.83, "champion v1", NO_SLICES, (-0.05, -0.01)), {}, RULES[2],
     "gain -0.0300 (95% interval -0.0500 to -0.0100) is worse than the margin 0.002"),
    ("not conclusive", (AUC, ABSOLUTE, 0.86, 0.83, "champion v1", NO_SLICES, (-0.01, 0.07)), {}, RULES[3],
     "95% interval -0.0100 to +0.0700 does not clear the margin 0.002: the holdout (not conclusive) cannot tell"),
    ("holdout too small", (AUC, ABSOLUTE, 0.86, 0.83, "champion v1", NO_SLICES, (np.nan, np.nan)), {}, RULES[3],
     "the holdout (too small) cannot tell the models apart"),
    ("unstable", (ACCURACY, ABSOLUTE, 0.16, 0.01, "baseline", NO_SLICES, (0.10, 0.20)), {"validation_score": 0.67},
     RULES[4], "unstable: holdout accuracy 0.1600 is 76% worse than validation 0.6700"),
    ("forgotten", (RMSE, RELATIVE, 40.0, 50.0, "champion v2", NO_SLICES, (6.0, 14.0)),
     {"memory": (90.0, 52.0, 2000)}, RULES[5],
     "it has forgotten older data: rmse on 2000 rows older than its validation period 90.0000 vs champion v2 "
     "52.0000, 73% worse (model.gate.max_memory_loss 10%)"),
    ("backtest loses a fold", (AUC, ABSOLUTE, 0.70, 0.5, "baseline", NO_SLICES, (-0.1, 0.4)),
     {"backtest": _backtest([(0.1, 0.05, 0.15), (-0.2, -0.3, -0.1), (0.1, 0.0, 0.2)])}, RULES[1],
     "the challenger is worse than the baseline beyond doubt on fold 2 (-0.2000, interval -0.3000 to -0.1000)"),
    ("backtest decides", (AUC, ABSOLUTE, 0.70, 0.5, "baseline", NO_SLICES, (-0.1, 0.4)),
     {"backtest": _backtest([(0.1, 0.05, 0.15), (0.08, -0.02, 0.2), (0.12, 0.0, 0.2)])}, None,
     "it clears the margin, wins 3 of 3 folds and is worse beyond doubt on none"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "args", "kwargs", "refusing", "words"), CASES, ids=[c[0] for c in CASES])
def test_each_rule_refuses_its_case_and_a_challenger_none_refuses_is_promoted(case, args, kwargs, refusing, words):
    verdict = decide(*args, **kwargs)
    evidence = Evidence(*args, **kwargs)
    first = next(((name, rule) for name, rule in RULES if rule(evidence)), None)
    assert first == refusing, f"{case}: refused by {first and first[0]}"
    assert verdict.promoted is (refusing is None)
    assert words in verdict.reason, verdict.reason


def test_a_slice_that_regresses_beyond_the_tolerance_blocks_promotion():
    slices = pd.DataFrame(
        {
            "slice": ["plan=basic", "plan=premium"],
            "rows": [100, 80],
            "challenger": [0.90, 0.70],
            "champion v1": [0.85, 0.78],
        }
    )
    verdict = decide(AUC, ABSOLUTE, 0.86, 0.83, "champion v1", slices, (0.015, 0.045))
    assert not verdict.promoted and verdict.reason == (
        "roc_auc gains +0.0300 overall but regresses beyond 0.05 on plan=premium (-0.0800)"
    )
    assert decide(AUC, ABSOLUTE, 0.86, 0.83, "champion v1", slices.iloc[:1], (0.015, 0.045)).promoted


def test_a_guardrail_that_falls_beyond_its_tolerance_blocks_promotion_and_is_named():
    rule = Rule(0.002, False, 0.02, 0.25, "warn", guardrails=(("f1", 0.02), ("recall", 0.05)))
    challenger = {"f1": 0.65, "recall": 0.34}
    champion = {"f1": 0.69, "recall": 0.52}  # the better ranker that catches fewer churners
    guardrails = guardrail_table(rule, CLASSIFICATION, challenger, champion)
    verdict = decide(AUC, rule, 0.86, 0.83, "champion v1", NO_SLICES, (0.01, 0.05), guardrails=guardrails)
    assert not verdict.promoted
    assert "guardrail f1: 0.6500 vs champion v1 0.6900 (-0.0400), worse than model.gate.guardrails.f1=0.02" in (
        verdict.reason
    )
    assert "guardrail recall: 0.3400 vs champion v1 0.5200 (-0.1800)" in verdict.reason
    within = guardrail_table(rule, CLASSIFICATION, {"f1": 0.68, "recall": 0.50}, champion)
    assert decide(AUC, rule, 0.86, 0.83, "champion v1", NO_SLICES, (0.01, 0.05), guardrails=within).promoted
    brier = guardrail_table(
        Rule(0.002, False, 0.02, 0.25, "warn", guardrails=(("brier", 0.01),)),
        CLASSIFICATION,
        {"brier": 0.14},
        {"brier": 0.12},
    )
    assert not brier["held"].any(), "brier is lower-is-better: a rise of 0.02 breaks a tolerance of 0.01"


def test_instability_warns_or_refuses_beyond_what_the_baselines_own_fall_explains():
    warn = Rule(margin=0.002, relative=False, slice_tolerance=0.02, max_holdout_drop=0.25, instability="warn")
    flagged = decide(ACCURACY, warn, 0.16, 0.01, "baseline", NO_SLICES, (0.10, 0.20), validation_score=0.67)
    assert flagged.promoted and "WARNING unstable: holdout accuracy 0.1600 is 76% worse than validation" in (
        flagged.reason
    )
    # births that grow: the holdout is harder for every model, the baseline's error too rose by 40%
    grown = decide(RMSE, RELATIVE, 960.0, 2400.0, "baseline", NO_SLICES, (1300.0, 1500.0), 647.0, harder=0.40)
    assert grown.promoted and "unstable" not in grown.reason
    unstable = decide(RMSE, RELATIVE, 960.0, 2400.0, "baseline", NO_SLICES, (1300.0, 1500.0), 647.0, harder=0.05)
    assert not unstable.promoted and unstable.reason.startswith(
        "unstable: holdout rmse 960.0000 is 48% worse than validation 647.0000, 43% beyond the baseline's own fall "
        "of 5% (model.gate.max_holdout_drop 25%)"
    )
    assert unstable.reason.endswith("refused (model.gate.instability: refuse)")


def test_a_challenger_that_remembers_older_rows_well_enough_is_promoted():
    memory = (55.0, 52.0, 2000)  # 6% worse on older rows, within max_memory_loss
    assert decide(RMSE, RELATIVE, 40.0, 50.0, "champion v2", NO_SLICES, (6.0, 14.0), memory=memory).promoted
