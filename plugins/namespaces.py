"""The `namespaces` plugin (being built: see its issue)."""
