"""The `selinux` plugin (being built: see its issue)."""
