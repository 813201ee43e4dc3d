"""Container-backend tests: the Docker gate and session cleanup live in harness.pytest_plugin
(``docker`` marker: skip without an engine, fail with QIKI_REQUIRE_DOCKER=1)."""
