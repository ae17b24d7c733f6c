"""Tooling around the asset graph: the `nexus` command, the demo replay, manual control, the exporter and the
production stack as local processes."""
