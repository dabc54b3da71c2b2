"""The `apparmor` plugin (being built: see its issue)."""
