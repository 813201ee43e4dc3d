"""Suite-wide test configuration (shared fixtures live in harness.pytest_plugin)."""

pytest_plugins = ["pytester"]
