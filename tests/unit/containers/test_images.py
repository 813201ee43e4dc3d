"""Services-image planning: what goes in, and that the cache key follows the inputs."""

from __future__ import annotations

import sys
from pathlib import Path

from harness.containers import images
from harness.containers.images import APP_DIR, PY_PREFIX, _dist_closure, _services_plan


def test_dist_closure_follows_requirements_without_extras() -> None:
    names = {d.metadata["Name"].lower().replace("_", "-") for d in _dist_closure(["pydantic"])}
    assert {"pydantic", "pydantic-core", "typing-extensions", "annotated-types"} <= names
    assert "email-validator" not in names  # an extra, not a requirement


def _project(tmp_path: Path, body: str) -> Path:
    (tmp_path / "services").mkdir()
    (tmp_path / "services" / "__init__.py").write_text(body)
    (tmp_path / "scenarios" / "specs").mkdir(parents=True)
    (tmp_path / "scenarios" / "specs" / "BotSpec.yaml").write_text("a: 1\n")
    return tmp_path


def test_plan_holds_interpreter_libs_deps_and_project(tmp_path: Path) -> None:
    plan = _services_plan(_project(tmp_path, "x = 1\n"))
    pyver = f"python{sys.version_info.major}.{sys.version_info.minor}"
    files = set(plan.files)
    assert f"{PY_PREFIX}/bin/{pyver}" in files
    assert f"{PY_PREFIX}/lib/{pyver}/os.py" in files
    assert any(f.endswith("/site-packages/nats/__init__.py") for f in files)
    assert any(f.endswith("/site-packages/yaml/__init__.py") for f in files)
    assert f"{APP_DIR}/services/__init__.py" in files
    assert f"{APP_DIR}/scenarios/specs/BotSpec.yaml" in files
    assert any("ld-linux" in f for f in files)  # dynamic loader from ldd
    # pruned: big stdlib parts the services never import, and host-only packages
    assert not any(f"/{pyver}/test/" in f or "/idlelib/" in f for f in files)
    assert not any("/site-packages/locust/" in f or "/site-packages/pytest" in f for f in files)


def test_cache_key_changes_with_project_content(tmp_path: Path) -> None:
    root = _project(tmp_path, "x = 1\n")
    first = _services_plan(root).digest(root)
    assert _services_plan(root).digest(root) == first
    (root / "services" / "__init__.py").write_text("x = 2\n")
    assert _services_plan(root).digest(root) != first


def test_default_tags() -> None:
    assert images.DEFAULT_NATS_IMAGE == "nats:2.10-alpine"
    assert images.LOCAL_NATS_REPO == "qiki/nats-local"
