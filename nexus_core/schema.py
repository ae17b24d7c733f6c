"""The app database's schema, in one place: the promotion audit log, batch predictions, partition health,
retraining decisions, shadow predictions and their judgement, and the data contracts. `nexus_resources/app_db.py`
reads and writes them; the service writes only `shadow_predictions` (it may import only the core)."""

import sqlalchemy as sa

metadata = sa.MetaData()

gate_decisions = sa.Table(
    "gate_decisions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("registered_model", sa.String(256), nullable=False),
    sa.Column("decision", sa.String(32), nullable=False),  # promoted | rejected | manual_promote | rollback
    sa.Column("actor", sa.String(64), nullable=False),  # gate | cli:<user>
    sa.Column("challenger_version", sa.String(32)),
    sa.Column("champion_version", sa.String(32)),
    sa.Column("metric", sa.String(64)),
    sa.Column("challenger_score", sa.Float),
    sa.Column("champion_score", sa.Float),
    sa.Column("margin", sa.Float),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("dagster_run_id", sa.String(64)),
    sa.Column("details", sa.JSON),
)


# A partition's predictions are one scoring batch (model, partition, version, time) and its rows (id, prediction,
# probability): a third of the bytes of one wide row each, and about two thirds of the insert cost
# (docs/benchmarks.md). The `predictions` view joins them back into the documented wide rows for people and SQL.
scoring_batches = sa.Table(
    "scoring_batches",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("registered_model", sa.String(256), nullable=False),
    sa.Column("partition", sa.String(256), nullable=False),
    sa.Column("model_version", sa.String(32), nullable=False),
    sa.Column("scored_at", sa.DateTime(timezone=True), nullable=False),
    sa.UniqueConstraint("registered_model", "partition"),
)

scored_rows = sa.Table(
    "scored_rows",
    metadata,
    sa.Column("batch_id", sa.Integer, sa.ForeignKey(scoring_batches.c.id), nullable=False),
    sa.Column("id", sa.String(128), nullable=False),
    sa.Column("prediction", sa.String(128), nullable=False),
    sa.Column("probability", sa.Float),  # of the positive class (binary), of the predicted class (multiclass)
    sa.PrimaryKeyConstraint("batch_id", "id"),
    sqlite_with_rowid=False,  # rows live in the key's B-tree: one tree to write per row, not two
)

PREDICTIONS_VIEW = sa.select(
    scored_rows.c.id,
    scoring_batches.c.partition,
    scoring_batches.c.registered_model,
    scoring_batches.c.model_version,
    scored_rows.c.prediction,
    scored_rows.c.probability,
    scoring_batches.c.scored_at,
).join_from(scored_rows, scoring_batches, scored_rows.c.batch_id == scoring_batches.c.id)
predictions = PREDICTIONS_VIEW.subquery("predictions")


partition_health = sa.Table(
    "partition_health",
    metadata,
    sa.Column("registered_model", sa.String(256), nullable=False),
    sa.Column("partition", sa.String(256), nullable=False),
    sa.Column("model_version", sa.String(32), nullable=False),  # the version whose predictions were judged
    sa.Column("predictions", sa.Integer),
    sa.Column("drift_share", sa.Float),
    sa.Column("drifted", sa.Boolean),
    sa.Column("metric", sa.String(64)),
    sa.Column("metric_value", sa.Float),
    sa.Column("degraded", sa.Boolean),  # None until enough labels arrived to judge
    sa.Column("labelled_rows", sa.Integer),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("registered_model", "partition"),
)

retraining_decisions = sa.Table(
    "retraining_decisions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("registered_model", sa.String(256), nullable=False),
    sa.Column("decision", sa.String(32), nullable=False),  # requested | held | failed
    sa.Column("champion_version", sa.String(32)),
    sa.Column("partition", sa.String(256)),  # the newest flagged partition
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("run_key", sa.String(256)),
)

# Each partition's judgement of the challengers shadow-scored on live requests (shadow_comparison), replaced when
# its labels are read again; the gate sums a challenger's labelled records here (model.gate.min_shadow_rows).
shadow_results = sa.Table(
    "shadow_results",
    metadata,
    sa.Column("registered_model", sa.String(256), nullable=False),
    sa.Column("partition", sa.String(256), nullable=False),
    sa.Column("source", sa.String(16), nullable=False),  # live | batch
    sa.Column("champion", sa.String(32), nullable=False),
    sa.Column("challenger", sa.String(32), nullable=False),
    sa.Column("labelled", sa.Integer, nullable=False),
    sa.Column("agreement", sa.Float),
    sa.Column("champion_score", sa.Float),
    sa.Column("challenger_score", sa.Float),
    sa.Column("gain", sa.Float),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("registered_model", "partition", "source", "champion", "challenger"),
)

# The data contract of each dataset: the role and type of every column, fixed by the first partition that passed
# its checks; a new version only when the config declares different roles.
data_contracts = sa.Table(
    "data_contracts",
    metadata,
    sa.Column("dataset", sa.String(256), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("columns", sa.JSON, nullable=False),  # name -> {"role": ..., "type": ...}
    sa.Column("fixed_by", sa.String(64)),  # the partition whose load fixed it
    sa.Column("fixed_at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("dataset", "version"),
)

# The challenger's answers to live requests (and batch scoring's), beside the champion's.
shadow_predictions = sa.Table(
    "shadow_predictions",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("registered_model", sa.String(256), nullable=False),
    sa.Column("record_id", sa.String(128)),  # the dataset's id column, when the request carried it
    sa.Column("source", sa.String(16), nullable=False),  # live (the service) | batch (batch_predictions)
    sa.Column("served_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("champion_version", sa.String(32), nullable=False),
    sa.Column("champion_prediction", sa.String(128), nullable=False),
    sa.Column("champion_probability", sa.Float),  # as batch scoring stores it: the positive class's, or the top one
    sa.Column("challenger_version", sa.String(32), nullable=False),
    sa.Column("challenger_prediction", sa.String(128), nullable=False),
    sa.Column("challenger_probability", sa.Float),
    sa.Index("shadow_predictions_record", "registered_model", "record_id"),
)
