import secrun_testplugin_missing_dependency  # noqa: F401  (deliberately absent)
