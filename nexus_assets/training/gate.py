"""The promotion gate's rule: beat the reference on the same holdout by the margin, with no slice regressing."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from nexus_assets.training.backtest import Backtest
from nexus_assets.training.metrics import Metric, evaluate


@dataclass
class GateDecision:
    promoted: bool
    reason: str
    reference: str  # "champion v3" or "baseline"
    challenger_score: float
    reference_score: float
    slices: pd.DataFrame
    interval: tuple[float, float] = (math.nan, math.nan)  # of the gain, at the rule's confidence
    guardrails: pd.DataFrame = field(default_factory=pd.DataFrame)  # GUARDRAIL_COLUMNS
    # would promote, but waits: for `nexus promote` ("approval") or for its shadow record on live traffic ("shadow")
    awaiting: str | None = None
    backtest: Backtest | None = None  # a first promotion's evidence where the holdout could not decide
    memory: tuple[float, float, int] | None = None  # both models' scores on rows older than validation, and rows

    @property
    def label(self) -> str:
        return f"awaiting_{self.awaiting}" if self.awaiting else "promoted" if self.promoted else "rejected"


def slice_scores(
    task: str, metric: Metric, models: dict[str, object], X: pd.DataFrame, y: pd.Series, column: str, min_rows: int
) -> pd.DataFrame:
    """The metric per category of `column` for each model; slices with too few rows are left out."""
    rows = []
    for value, index in X.groupby(column, dropna=False).groups.items():
        if len(index) < min_rows:
            continue
        scores = {
            name: evaluate(task, model, X.loc[index], y.loc[index])[metric.name] for name, model in models.items()
        }
        if not any(math.isnan(score) for score in scores.values()):
            rows.append({"slice": f"{column}={value}", "rows": len(index), **scores})
    return pd.DataFrame(rows, columns=["slice", "rows", *models])


@dataclass(frozen=True)
class Rule:
    """The gate's settings with the task's defaults filled in."""

    margin: float
    relative: bool  # margin as a share of the reference's score
    slice_tolerance: float
    max_holdout_drop: float
    instability: str  # "warn" or "refuse"
    confidence: float = 0.95
    guardrails: tuple[tuple[str, float], ...] = ()  # (metric, how much worse than the reference it may get)
    max_predict_ms: float | None = None
    max_memory_loss: float = 0.1  # share of the reference's score on older rows the challenger may lose

    def required_gain(self, reference_score: float) -> float:
        return self.margin * abs(reference_score) if self.relative else self.margin

    def clears(self, interval: tuple[float, float], reference_score: float) -> bool:
        """Whether a gain with this interval clears the margin with the rule's confidence."""
        return not math.isnan(interval[0]) and interval[0] >= self.required_gain(reference_score)

    def describe_margin(self, reference_score: float) -> str:
        if self.relative:
            return f"{self.required_gain(reference_score):.4g} ({self.margin:.2%} of the reference's score)"
        return f"{self.margin}"


GUARDRAIL_COLUMNS = ["guardrail", "challenger", "reference", "change", "allowed", "held"]


def guardrail_table(
    rule: Rule, metrics: dict[str, Metric], challenger: dict[str, float], reference: dict[str, float]
) -> pd.DataFrame:
    """Each guardrail with both models' values and whether the challenger held it. `challenger` and `reference`
    hold every metric and `predict_ms` (the median predict of one record); a value that cannot be computed holds."""
    rows = []
    for name, tolerance in rule.guardrails:
        new, old = challenger[name], reference[name]
        change = metrics[name].gain(new, old)
        rows.append([name, new, old, change, -tolerance, bool(math.isnan(change) or change >= -tolerance)])
    if rule.max_predict_ms is not None:
        new, old = challenger["predict_ms"], reference["predict_ms"]
        rows.append(["predict_ms", new, old, old - new, rule.max_predict_ms, bool(new <= rule.max_predict_ms)])
    return pd.DataFrame(rows, columns=GUARDRAIL_COLUMNS)


def _broken(guardrails: pd.DataFrame, reference: str) -> str | None:
    broken = guardrails[~guardrails["held"].astype(bool)]
    if broken.empty:
        return None
    return "; ".join(
        f"guardrail predict_ms: the challenger's median predict of one record takes {g.challenger:.2f} ms, over "
        f"the budget model.gate.max_predict_ms={g.allowed:g}"
        if g.guardrail == "predict_ms"
        else f"guardrail {g.guardrail}: {g.challenger:.4f} vs {reference} {g.reference:.4f} ({g.change:+.4f}), "
        f"worse than model.gate.guardrails.{g.guardrail}={-g.allowed:g} allows"
        for g in broken.itertuples()
    )


def instability(
    metric: Metric, validation_score: float, holdout_score: float, rule: Rule, harder: float = 0.0
) -> str | None:
    """A warning when the challenger's holdout score falls far below its validation score, by more than the
    holdout period is `harder` (the trivial baseline's own fall between the same periods: a growing count, a
    stormier season)."""
    if math.isnan(validation_score) or math.isnan(holdout_score) or validation_score == 0:
        return None
    drop = -metric.gain(holdout_score, validation_score) / abs(validation_score)
    harder = 0.0 if math.isnan(harder) else max(harder, 0.0)
    if drop - harder <= rule.max_holdout_drop:
        return None
    beyond = f", {drop - harder:.0%} beyond the baseline's own fall of {harder:.0%}" if harder else ""
    return (
        f"unstable: holdout {metric.name} {holdout_score:.4f} is {drop:.0%} worse than validation "
        f"{validation_score:.4f}{beyond} (model.gate.max_holdout_drop {rule.max_holdout_drop:.0%}); the newest "
        "data may differ from the training window"
    )


def decide(
    metric: Metric,
    rule: Rule,
    challenger_score: float,
    reference_score: float,
    reference: str,
    slices: pd.DataFrame,
    interval: tuple[float, float],
    validation_score: float = math.nan,
    guardrails: pd.DataFrame | None = None,
    backtest: Backtest | None = None,
    memory: tuple[float, float, int] | None = None,
    harder: float = 0.0,
) -> GateDecision:
    """Promote only when the challenger's gain clears the margin with the rule's confidence (the lower end of the
    gain's interval on the holdout, or, given a `backtest`, on every fold and over all of them), it loses no more
    than the tolerance on any slice, holds every guardrail, and holds its validation score on the holdout (or is
    only warned about it)."""
    guardrails = pd.DataFrame(columns=GUARDRAIL_COLUMNS) if guardrails is None else guardrails
    verdict = dict(
        reference=reference,
        challenger_score=challenger_score,
        reference_score=reference_score,
        slices=slices,
        interval=interval,
        guardrails=guardrails,
        backtest=backtest,
        memory=memory,
    )
    if math.isnan(challenger_score) or math.isnan(reference_score):
        return GateDecision(
            False,
            f"holdout {metric.name} cannot be computed (challenger {challenger_score}, {reference} "
            f"{reference_score}): the holdout lacks what the metric needs; choose another model.selection_metric",
            **verdict,
        )
    gain, required = metric.gain(challenger_score, reference_score), rule.required_gain(reference_score)
    warning = instability(metric, validation_score, challenger_score, rule, harder)
    spread = f"{rule.confidence:.0%} interval {interval[0]:+.4f} to {interval[1]:+.4f}"
    evidence = (
        f"{metric.name} {challenger_score:.4f} beats {reference} {reference_score:.4f} by {gain:+.4f} "
        f"({spread}; margin {rule.describe_margin(reference_score)})"
    )
    if backtest is not None:
        held = (
            f"the holdout ({metric.name} {challenger_score:.4f} vs {reference_score:.4f}, {spread}) is not conclusive"
        )
        refusal, evidence = _backtest_verdict(metric, rule, backtest, held)
        if refusal:
            return GateDecision(False, refusal + (f"; {warning}" if warning else ""), **verdict)
    elif not metric.better(challenger_score, reference_score, required):
        what = "a tie within" if abs(gain) < required else "worse than"
        return GateDecision(
            False,
            f"{metric.name} {challenger_score:.4f} vs {reference} {reference_score:.4f}: "
            f"gain {gain:+.4f} ({spread}) is {what} the margin {rule.describe_margin(reference_score)}"
            + (f"; {warning}" if warning else ""),
            **verdict,
        )
    elif not rule.clears(interval, reference_score):
        return GateDecision(
            False,
            f"{metric.name} {challenger_score:.4f} vs {reference} {reference_score:.4f}: gain {gain:+.4f}, but its "
            f"{spread} does not clear the margin {rule.describe_margin(reference_score)}: the holdout "
            f"({'too small' if math.isnan(interval[0]) else 'not conclusive'}) cannot tell the models apart"
            + (f"; {warning}" if warning else ""),
            **verdict,
        )
    if warning and backtest is not None:  # measured on the holdout the backtest stood in for
        warning += " (not refused: the backtest decided where the holdout could not)"
    elif warning and rule.instability == "refuse":
        return GateDecision(False, f"{warning}; refused (model.gate.instability: refuse)", **verdict)
    forgotten = _forgotten(metric, rule, memory, reference)
    if forgotten:
        return GateDecision(False, forgotten, **verdict)
    if not slices.empty and reference in slices:
        losses = slices.assign(
            gain=[metric.gain(c, r) for c, r in zip(slices["challenger"], slices[reference], strict=True)]
        )
        regressed = losses[losses["gain"] < -rule.slice_tolerance]
        if not regressed.empty:
            listed = ", ".join(f"{r.slice} ({r.gain:+.4f})" for r in regressed.itertuples())
            return GateDecision(
                False,
                f"{metric.name} gains {gain:+.4f} overall but regresses beyond {rule.slice_tolerance} on {listed}",
                **verdict,
            )
    broken = _broken(guardrails, reference)
    if broken:
        return GateDecision(False, f"{metric.name} gains {gain:+.4f}, but {broken}", **verdict)
    return GateDecision(True, evidence + (f"; WARNING {warning}" if warning else ""), **verdict)


def _forgotten(metric: Metric, rule: Rule, memory: tuple[float, float, int] | None, reference: str) -> str | None:
    """Why the challenger is refused for doing much worse than the reference on older rows (a retrain that learned
    only a recent season), or None."""
    if memory is None or any(math.isnan(score) for score in memory[:2]) or memory[1] == 0:
        return None
    new, old, rows = memory
    loss = -metric.gain(new, old) / abs(old)
    if loss <= rule.max_memory_loss:
        return None
    return (
        f"it has forgotten older data: {metric.name} on {rows} rows older than its validation period {new:.4f} vs "
        f"{reference} {old:.4f}, {loss:.0%} worse (model.gate.max_memory_loss {rule.max_memory_loss:.0%}); train "
        "on a window that covers the seasons it will meet (training.on_change: weight)"
    )


def _backtest_verdict(metric: Metric, rule: Rule, backtest: Backtest, held: str) -> tuple[str | None, str]:
    """(why the backtest refuses, or None; what it showed), for a first promotion the holdout could not decide."""
    folds, scored = backtest.folds, backtest.scored
    low, high = backtest.interval
    shown = (
        f"{held}; a rolling-origin backtest over the training history ({len(folds)} folds, each model refitted on "
        f"the rows before each fold) gains {backtest.gain:+.4f} {metric.name} over the baseline per fold on "
        f"average, {rule.confidence:.0%} interval {low:+.4f} to {high:+.4f} (margin "
        f"{rule.describe_margin(backtest.baseline_score)})"
    )
    if len(scored) < 2:
        return f"{shown}: fewer than two folds could be scored; bring more history", shown
    losing = scored[scored["high"] < 0]
    if not losing.empty:
        listed = ", ".join(
            f"fold {f.fold} ({f.gain:+.4f}, interval {f.low:+.4f} to {f.high:+.4f})" for f in losing.itertuples()
        )
        return f"{shown}: the challenger is worse than the baseline beyond doubt on {listed}", shown
    if math.isnan(low) or low < rule.required_gain(backtest.baseline_score):
        return f"{shown}: the interval does not clear the margin", shown
    wins = int((scored["gain"] > 0).sum())
    return None, f"{shown}: it clears the margin, wins {wins} of {len(scored)} folds and is worse beyond doubt on none"
