"""The `identity` plugin (being built: see its issue)."""
