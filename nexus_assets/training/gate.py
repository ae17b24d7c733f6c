"""The promotion gate's rule: beat the reference on the same holdout by the margin, with no slice regressing."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from nexus_assets.training.metrics import Metric, evaluate
from nexus_resources.config import GateConfig


@dataclass
class GateDecision:
    promoted: bool
    reason: str
    reference: str  # "champion v3" or "baseline"
    challenger_score: float
    reference_score: float
    slices: pd.DataFrame
    awaiting_approval: bool = False  # would promote, but an automatic retrain waits for `nexus promote`

    @property
    def label(self) -> str:
        return "awaiting_approval" if self.awaiting_approval else "promoted" if self.promoted else "rejected"


def slice_scores(
    task: str, metric: Metric, models: dict[str, object], X: pd.DataFrame, y: pd.Series, column: str, min_rows: int
) -> pd.DataFrame:
    """The metric per category of `column` for each model; slices with too few rows are left out."""
    rows = []
    for value, index in X.groupby(column, dropna=False).groups.items():
        if len(index) < min_rows:
            continue
        scores = {
            name: evaluate(task, model, X.loc[index], y.loc[index]).get(metric.name) for name, model in models.items()
        }
        if None not in scores.values():
            rows.append({"slice": f"{column}={value}", "rows": len(index), **scores})
    return pd.DataFrame(rows, columns=["slice", "rows", *models])


def decide(
    metric: Metric,
    gate: GateConfig,
    challenger_score: float,
    reference_score: float,
    reference: str,
    slices: pd.DataFrame,
) -> GateDecision:
    """Promote only when the challenger gains at least the margin overall and loses no more than the tolerance
    on any slice."""
    gain = metric.gain(challenger_score, reference_score)
    verdict = dict(
        reference=reference, challenger_score=challenger_score, reference_score=reference_score, slices=slices
    )
    if not metric.better(challenger_score, reference_score, gate.margin):
        what = "a tie within" if abs(gain) < gate.margin else "worse than"
        return GateDecision(
            False,
            f"{metric.name} {challenger_score:.4f} vs {reference} {reference_score:.4f}: "
            f"gain {gain:+.4f} is {what} the margin {gate.margin}",
            **verdict,
        )
    if not slices.empty and reference in slices:
        losses = slices.assign(
            gain=[metric.gain(c, r) for c, r in zip(slices["challenger"], slices[reference], strict=True)]
        )
        regressed = losses[losses["gain"] < -gate.slice_tolerance]
        if not regressed.empty:
            listed = ", ".join(f"{r.slice} ({r.gain:+.4f})" for r in regressed.itertuples())
            return GateDecision(
                False,
                f"{metric.name} gains {gain:+.4f} overall but regresses beyond {gate.slice_tolerance} on {listed}",
                **verdict,
            )
    return GateDecision(
        True,
        f"{metric.name} {challenger_score:.4f} beats {reference} {reference_score:.4f} "
        f"by {gain:+.4f} (margin {gate.margin})",
        **verdict,
    )
