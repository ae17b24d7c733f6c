"""The BentoML service of the champion and what it needs to load, check and batch a model version. Imports only
the core (and BentoML, MLflow, pydantic), so the Bento ships `nexus_core/` and `serving/` alone."""

SERVICE = "serving.service:NexusModelService"
