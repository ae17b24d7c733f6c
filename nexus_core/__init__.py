"""What the asset graph and the service share: the config, the feature schema, registry access, inference and
the names of tags and targets. Imports no other NexusML package."""
