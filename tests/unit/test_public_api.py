"""The public surface: importing it is cheap and side-effect free; lazy names resolve."""

from __future__ import annotations

import subprocess
import sys

import harness


def test_import_harness_loads_nothing_heavy() -> None:
    code = (
        "import sys, harness, harness.scenario.model;"
        "heavy = [m for m in ('nats', 'locust', 'gevent', 'docker', 'harness.platform')"
        " if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_lazy_names_resolve_to_the_real_objects() -> None:
    from harness.scenario.runner import run_scenario

    assert harness.run_scenario is run_scenario
    for name in harness.__all__:
        assert getattr(harness, name) is not None


def test_unknown_name_is_an_attribute_error() -> None:
    try:
        harness.nope  # noqa: B018
    except AttributeError as exc:
        assert "nope" in str(exc)
    else:  # pragma: no cover
        raise AssertionError("harness.nope resolved")
