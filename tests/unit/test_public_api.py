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


def test_security_exports_resolve_and_are_documented() -> None:
    """``harness.security``'s public pieces (issue 10) resolve lazily to the real objects,
    each with a docstring; importing the package loads no credentials, probes or nats."""
    import harness.security as sec
    from harness.security.credentials import RunCredentials
    from harness.security.permissions import identities_for_run

    assert sec.RunCredentials is RunCredentials
    assert sec.identities_for_run is identities_for_run
    assert set(sec.__all__) == {"ALLOW_ALL", "Identity", "Permissions", *sec._LAZY}
    for name in sec.__all__:
        obj = getattr(sec, name)
        if callable(obj):
            assert (obj.__doc__ or "").strip(), f"harness.security.{name} has no docstring"
    code = ("import sys, harness.security;"
            "print([m for m in ('nats', 'harness.security.credentials',"
            " 'harness.security.probes') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"
