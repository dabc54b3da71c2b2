"""The `seccomp` plugin (being built: see its issue)."""
