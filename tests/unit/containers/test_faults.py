"""Container fault values: validation, repr, apply/heal mapping (fake nodes, no engine)."""

from __future__ import annotations

from typing import Any, cast

import pytest

from harness.containers.faults import FAULT_KINDS, ContainerFault, run_fault


class FakeNode:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.running, self.paused, self.connected = True, False, True

    async def refresh(self) -> None:
        self.calls.append("refresh")

    async def pause(self) -> None:
        self.calls.append("pause")
        self.paused = True

    async def resume(self) -> None:
        self.calls.append("resume")
        self.paused = False

    async def kill(self) -> None:
        self.calls.append("kill")
        self.running = False

    terminate = kill

    async def stop(self) -> None:
        self.calls.append("stop")
        self.running = False

    async def restart(self) -> None:
        self.calls.append("restart")
        self.running = True

    async def disconnect(self) -> None:
        self.calls.append("disconnect")
        self.connected = False

    async def connect(self) -> None:
        self.calls.append("connect")
        self.connected = True


class FakeBroker:
    def __init__(self) -> None:
        self.n2 = FakeNode()

    def node(self, name: str) -> FakeNode:
        if name != "n2":
            raise KeyError(f"no node named {name!r}; nodes are ['n2']")
        return self.n2


def test_kinds_and_repr() -> None:
    assert FAULT_KINDS == ("pause", "kill", "terminate", "stop", "restart", "disconnect")
    assert repr(ContainerFault("pause", "n2")) == "ContainerFault('pause', 'n2')"


@pytest.mark.parametrize(
    ("kind", "target", "message"),
    [("freeze", "n1", "'freeze' is not one of pause"), ("kill", "", "must be a node name")],
)
def test_bad_arguments_fail_at_construction(kind: str, target: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ContainerFault(cast(Any, kind), target)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("pause", ["pause", "refresh", "resume"]),
        ("kill", ["kill", "refresh", "restart"]),
        ("stop", ["stop", "refresh", "restart"]),
        ("restart", ["restart", "refresh"]),
        ("disconnect", ["disconnect", "refresh", "connect"]),
    ],
)
async def test_applied_heals_on_exit(kind: str, expected: list[str]) -> None:
    broker = FakeBroker()
    times = await run_fault(ContainerFault(cast(Any, kind), "n2"), cast(Any, broker), 0)
    assert broker.n2.calls == expected
    assert (times.removed_at is None) == (kind == "restart")


async def test_heal_runs_when_body_fails_and_is_idempotent() -> None:
    broker = FakeBroker()
    fault = ContainerFault("pause", "n2")
    with pytest.raises(RuntimeError):
        async with fault.applied(cast(Any, broker)):
            raise RuntimeError("step failed")
    assert not broker.n2.paused
    await fault.heal(cast(Any, broker))  # already healed: no second resume
    assert broker.n2.calls.count("resume") == 1


async def test_unknown_target_names_known_nodes() -> None:
    with pytest.raises(ValueError, match=r"ContainerFault\('kill', 'n9'\).*\['n2'\]"):
        await ContainerFault("kill", "n9").apply(cast(Any, FakeBroker()))


async def test_negative_duration_rejected() -> None:
    with pytest.raises(ValueError, match="duration_s"):
        await run_fault(ContainerFault("kill", "n2"), cast(Any, FakeBroker()), -1)
