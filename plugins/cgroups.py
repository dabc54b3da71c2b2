"""The `cgroups` plugin (being built: see its issue)."""
