"""Labels and cleanup-by-label logic against a fake docker client (no engine needed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from harness.containers import engine
from harness.containers.engine import (
    LABEL_ROOT,
    LABEL_RUN,
    LABEL_SESSION,
    ROOT_SELECTOR,
    cleanup,
    docker_available,
    list_labelled,
    run_labels,
    run_selector,
    session_selector,
)


class NotFound(Exception):
    """Named like docker.errors.NotFound (cleanup recognises it by name)."""


@dataclass
class FakeResource:
    name: str
    labels: dict[str, str]
    world: FakeClient
    kind: str
    error: Exception | None = None

    def remove(self, **_: Any) -> None:
        if self.kind == "network" and any(
            c.labels.get("net") == self.name for c in self.world.containers.items
        ):
            raise RuntimeError(f"network {self.name} has active endpoints")
        if self.error is not None:
            raise self.error
        self.world.removed.append(f"{self.kind}:{self.name}")
        bucket = self.world.containers if self.kind == "container" else self.world.networks
        bucket.items.remove(self)


def _matches(labels: dict[str, str], selector: str) -> bool:
    key, sep, value = selector.partition("=")
    return key in labels and (not sep or labels[key] == value)


@dataclass
class FakeCollection:
    items: list[FakeResource] = field(default_factory=list)

    def list(self, all: bool = False, filters: dict[str, Any] | None = None) -> list[FakeResource]:
        selector = (filters or {})["label"]
        return [r for r in self.items if _matches(r.labels, selector)]


@dataclass
class FakeClient:
    containers: FakeCollection = field(default_factory=FakeCollection)
    networks: FakeCollection = field(default_factory=FakeCollection)
    removed: list[str] = field(default_factory=list)
    closed: bool = False

    def add(self, kind: str, name: str, labels: dict[str, str], **kw: Any) -> FakeResource:
        res = FakeResource(name, labels, self, kind, **kw)
        (self.containers if kind == "container" else self.networks).items.append(res)
        return res

    def close(self) -> None:
        self.closed = True


def test_run_labels_carry_root_run_and_session(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(engine.SESSION_ENV, raising=False)
    assert run_labels("abc") == {LABEL_ROOT: "1", LABEL_RUN: "abc"}
    monkeypatch.setenv(engine.SESSION_ENV, "s1")
    labels = run_labels("abc", **{"qiki-harness.role": "nats"})
    assert labels[LABEL_SESSION] == "s1" and labels["qiki-harness.role"] == "nats"
    assert run_selector("abc") == f"{LABEL_RUN}=abc"
    assert session_selector("s1") == f"{LABEL_SESSION}=s1"


def test_new_run_ids_differ() -> None:
    assert len({engine.new_run_id() for _ in range(50)}) == 50


def test_cleanup_removes_only_the_selected_run_containers_before_networks() -> None:
    world = FakeClient()
    mine = run_labels("r1")
    world.add("network", "qiki-r1", mine)
    world.add("container", "qiki-r1-n1", {**mine, "net": "qiki-r1"})
    world.add("container", "qiki-r1-n2", {**mine, "net": "qiki-r1"})
    world.add("container", "qiki-r2-n1", run_labels("r2"))  # another run: must stay
    world.add("container", "postgres", {"app": "db"})  # not ours at all: must stay

    report = cleanup(run_selector("r1"), client=world)

    assert sorted(report.containers) == ["qiki-r1-n1", "qiki-r1-n2"]
    assert report.networks == ["qiki-r1"] and not report.errors
    # the network could only go once its containers were gone
    assert world.removed[-1] == "network:qiki-r1"
    assert list_labelled(world, ROOT_SELECTOR) == (["qiki-r2-n1"], [])
    assert [c.name for c in world.containers.items] == ["qiki-r2-n1", "postgres"]
    assert not world.closed  # a caller's client is not closed for them


def test_cleanup_root_selector_removes_every_harness_resource() -> None:
    world = FakeClient()
    world.add("container", "a", run_labels("r1"))
    world.add("container", "b", run_labels("r2"))
    world.add("network", "n", run_labels("r2"))
    world.add("container", "other", {"app": "x"})
    report = cleanup(client=world)
    assert sorted(report.containers) == ["a", "b"] and report.networks == ["n"]
    assert [c.name for c in world.containers.items] == ["other"]


def test_cleanup_collects_errors_and_ignores_already_gone() -> None:
    world = FakeClient()
    world.add("container", "stuck", run_labels("r1"), error=RuntimeError("device busy"))
    world.add("container", "gone", run_labels("r1"), error=NotFound("no such container"))
    world.add("container", "ok", run_labels("r1"))
    report = cleanup(run_selector("r1"), client=world)
    assert report.containers == ["ok"]
    assert report.errors == {"container stuck": "device busy"}
    assert not report.empty


@pytest.mark.parametrize("selector", ["app=db", "", "com.docker.compose.project", "qiki=1"])
def test_cleanup_refuses_selectors_that_are_not_harness_labels(selector: str) -> None:
    world = FakeClient()
    world.add("container", "db", {"app": "db"})
    with pytest.raises(ValueError, match="does not name a harness label"):
        cleanup(selector, client=world)
    assert world.removed == []


def test_docker_available_false_with_reason_when_no_socket(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such.sock")
    ok, reason = docker_available(timeout_s=1)
    assert not ok
    assert "did not answer" in reason or "cannot create" in reason
