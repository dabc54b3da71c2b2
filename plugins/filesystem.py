"""The `filesystem` plugin (being built: see its issue)."""
