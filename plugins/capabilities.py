"""The `capabilities` plugin (being built: see its issue)."""
