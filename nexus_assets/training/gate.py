"""The promotion gate's rule: beat the reference on the same holdout by the margin, with no slice regressing."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
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


@dataclass(frozen=True)
class Evidence:
    """What the gate judges: both models' holdout scores, the gain's interval and what else was measured."""

    metric: Metric
    rule: Rule
    challenger_score: float
    reference_score: float
    reference: str  # "champion v3" or "baseline"
    slices: pd.DataFrame
    interval: tuple[float, float]
    validation_score: float = math.nan
    guardrails: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=GUARDRAIL_COLUMNS))
    backtest: Backtest | None = None
    memory: tuple[float, float, int] | None = None
    harder: float = 0.0

    @property
    def gain(self) -> float:
        return self.metric.gain(self.challenger_score, self.reference_score)

    @property
    def margin(self) -> str:
        return self.rule.describe_margin(self.reference_score)

    @property
    def spread(self) -> str:
        return f"{self.rule.confidence:.0%} interval {self.interval[0]:+.4f} to {self.interval[1]:+.4f}"

    @property
    def scores(self) -> str:
        return f"{self.metric.name} {self.challenger_score:.4f} vs {self.reference} {self.reference_score:.4f}"

    @functools.cached_property
    def warning(self) -> str | None:
        return instability(self.metric, self.validation_score, self.challenger_score, self.rule, self.harder)

    def warned(self, reason: str) -> str:
        return reason + (f"; {self.warning}" if self.warning else "")


def _computable(e: Evidence) -> str | None:
    if math.isnan(e.challenger_score) or math.isnan(e.reference_score):
        return (
            f"holdout {e.metric.name} cannot be computed (challenger {e.challenger_score}, {e.reference} "
            f"{e.reference_score}): the holdout lacks what the metric needs; choose another model.selection_metric"
        )
    return None


def _backtest_clears(e: Evidence) -> str | None:
    if e.backtest is None:
        return None
    refusal, _ = _backtest_verdict(e.metric, e.rule, e.backtest, _held(e))
    return e.warned(refusal) if refusal else None


def _held(e: Evidence) -> str:
    scores = f"{e.metric.name} {e.challenger_score:.4f} vs {e.reference_score:.4f}"
    return f"the holdout ({scores}, {e.spread}) is not conclusive"


def _wins(e: Evidence) -> str | None:
    if e.backtest is not None or e.metric.better(
        e.challenger_score, e.reference_score, e.rule.required_gain(e.reference_score)
    ):
        return None
    what = "a tie within" if abs(e.gain) < e.rule.required_gain(e.reference_score) else "worse than"
    return e.warned(f"{e.scores}: gain {e.gain:+.4f} ({e.spread}) is {what} the margin {e.margin}")


def _conclusive(e: Evidence) -> str | None:
    if e.backtest is not None or e.rule.clears(e.interval, e.reference_score):
        return None
    why = "too small" if math.isnan(e.interval[0]) else "not conclusive"
    return e.warned(
        f"{e.scores}: gain {e.gain:+.4f}, but its {e.spread} does not clear the margin {e.margin}: the holdout "
        f"({why}) cannot tell the models apart"
    )


def _stable(e: Evidence) -> str | None:
    # measured on the holdout a backtest stood in for: the backtest decided where the holdout could not
    if e.warning and e.backtest is None and e.rule.instability == "refuse":
        return f"{e.warning}; refused (model.gate.instability: refuse)"
    return None


def _remembers(e: Evidence) -> str | None:
    return _forgotten(e.metric, e.rule, e.memory, e.reference)


def _slices_hold(e: Evidence) -> str | None:
    slices = e.slices
    if slices.empty or e.reference not in slices:
        return None
    gains = [e.metric.gain(c, r) for c, r in zip(slices["challenger"], slices[e.reference], strict=True)]
    regressed = slices.assign(gain=gains).query("gain < @tolerance", local_dict={"tolerance": -e.rule.slice_tolerance})
    if regressed.empty:
        return None
    listed = ", ".join(f"{r.slice} ({r.gain:+.4f})" for r in regressed.itertuples())
    return f"{e.metric.name} gains {e.gain:+.4f} overall but regresses beyond {e.rule.slice_tolerance} on {listed}"


def _guardrails_hold(e: Evidence) -> str | None:
    broken = _broken(e.guardrails, e.reference)
    return f"{e.metric.name} gains {e.gain:+.4f}, but {broken}" if broken else None


# The gate's rules, read top to bottom: the first that refuses decides, and a challenger no rule refuses is promoted.
RULES: tuple[tuple[str, Callable[[Evidence], str | None]], ...] = (
    ("both holdout scores can be computed", _computable),
    ("a first promotion's backtest clears the margin and loses no fold beyond doubt", _backtest_clears),
    ("the gain clears the margin (a loss or a tie does not)", _wins),
    ("the gain's interval clears the margin (the holdout is conclusive)", _conclusive),
    ("the holdout score holds the validation score (model.gate.instability: refuse)", _stable),
    ("older rows are not forgotten (model.gate.max_memory_loss)", _remembers),
    ("no slice regresses beyond model.gate.slice_tolerance", _slices_hold),
    ("every guardrail holds", _guardrails_hold),
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
    """The challenger against the reference by `RULES`; promoted with the evidence (and any instability warning)
    when none refuses."""
    guardrails = pd.DataFrame(columns=GUARDRAIL_COLUMNS) if guardrails is None else guardrails
    e = Evidence(
        metric,
        rule,
        challenger_score,
        reference_score,
        reference,
        slices,
        interval,
        validation_score,
        guardrails,
        backtest,
        memory,
        harder,
    )
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
    for _, refuses in RULES:
        refusal = refuses(e)
        if refusal:
            return GateDecision(False, refusal, **verdict)
    return GateDecision(True, _promotion(e), **verdict)


def _promotion(e: Evidence) -> str:
    """Why the challenger is promoted: the holdout's evidence, or the backtest's, and any instability warning."""
    if e.backtest is not None:
        _, reason = _backtest_verdict(e.metric, e.rule, e.backtest, _held(e))
    else:
        beats = f"{e.metric.name} {e.challenger_score:.4f} beats {e.reference} {e.reference_score:.4f}"
        reason = f"{beats} by {e.gain:+.4f} ({e.spread}; margin {e.margin})"
    warning = e.warning
    if warning and e.backtest is not None:
        warning += " (not refused: the backtest decided where the holdout could not)"
    return reason + (f"; WARNING {warning}" if warning else "")


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
