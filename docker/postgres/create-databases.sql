-- Separate databases for Dagster's storage, MLflow's backend store and NexusML's app data (audit, predictions).
-- Run once by the postgres image on an empty volume.
CREATE DATABASE dagster;
CREATE DATABASE mlflow;
CREATE DATABASE nexus_app;
