"""What placeholders stand for at run time (no NATS: the launcher's value table only)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from harness.services.placeholders import expand_command, placeholder_problems
from harness.services.runtime import ServiceLauncher


def _launcher(tmp_path: Path) -> ServiceLauncher:
    platform: Any = SimpleNamespace(run_dir=tmp_path / "run", botspec=tmp_path / "spec.yaml")
    return ServiceLauncher(platform, scenario_dir=tmp_path)


def test_values_never_carry_credentials(tmp_path: Path) -> None:
    v = _launcher(tmp_path).values(
        "gh", ["nats://alice:s3cret@127.0.0.1:4311", "nats://tok@127.0.0.1:4312"])
    assert v["nats_url"] == "nats://127.0.0.1:4311,nats://127.0.0.1:4312"
    assert (v["nats_host"], v["nats_port"]) == ("127.0.0.1", "4311")
    assert "s3cret" not in repr(v) and "tok" not in repr(v)
    assert v["run_dir"] == str((tmp_path / "run").resolve())
    assert v["spec"] == str((tmp_path / "spec.yaml").resolve())
    assert v["scenario_dir"] == str(tmp_path.resolve()) and v["service"] == "gh"


def test_http_port_is_chosen_once_per_service(tmp_path: Path) -> None:
    launcher = _launcher(tmp_path)
    first = launcher.values("a", ["nats://127.0.0.1:1"])["http_port"]
    assert launcher.values("a", ["nats://127.0.0.1:1"])["http_port"] == first  # restarts keep it
    assert launcher.values("b", ["nats://127.0.0.1:1"])["http_port"] != first


def test_the_model_does_not_import_the_runtime() -> None:
    code = ("import sys, harness.scenario.model as m; m.Topology();"
            "print([x for x in ('harness.services.runtime', 'nats') if x in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


def test_python_is_the_harness_interpreter_bare_or_as_a_placeholder(tmp_path: Path) -> None:
    v = _launcher(tmp_path).values("gh", ["nats://127.0.0.1:1"])
    assert v["python"] == sys.executable
    assert placeholder_problems("{python}") == []
    # A bare python/python3 first word is the harness's interpreter, not PATH's python...
    for word in ("python", "python3", "{python}"):
        assert expand_command([word, "-m", "gh", "--url", "{nats_url}"], v) == [
            sys.executable, "-m", "gh", "--url", "nats://127.0.0.1:1"]
    # ...but only as the first word, and an explicit interpreter path is left alone.
    assert expand_command(["sh", "-c", "python"], v) == ["sh", "-c", "python"]
    assert expand_command(["/usr/bin/python3", "x.py"], v) == ["/usr/bin/python3", "x.py"]
    assert expand_command(["python3.11", "x.py"], v) == ["python3.11", "x.py"]
