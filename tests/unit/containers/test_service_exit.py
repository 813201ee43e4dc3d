"""A service container that prints its error and exits while the harness waits for it to be
ready: the SetupError and the saved log quote that error, even when it was printed between
the harness's log read and its inspect (seen under load: an empty log for a crashed service)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from harness.containers.services import ServiceContainer
from harness.errors import SetupError


class ExitsBetweenReadAndInspect:
    """A docker-py container whose log is empty until the inspect that finds it exited."""

    def __init__(self) -> None:
        self.status = "running"
        self._log = b""

    def logs(self, stdout: bool = True, stderr: bool = True) -> bytes:
        return self._log

    def reload(self) -> None:
        # The service writes its last words and exits just before this inspect.
        self._log = b"booting\nFATAL: cannot open the frobnicator\n"
        self.status = "exited"


async def test_the_error_printed_just_before_the_exit_is_quoted() -> None:
    broker: Any = SimpleNamespace(run_id="exit1", internal_client_urls=["nats://n1:4222"],
                                  _network=object())
    svc = ServiceContainer("user.echo", broker=broker, name="echo", image="echo:dev",
                           ready_timeout_s=600)
    svc._container = ExitsBetweenReadAndInspect()
    with pytest.raises(SetupError) as info:
        await svc._wait_ready()
    message = str(info.value)
    assert "it exited (exited)" in message, message
    assert "FATAL: cannot open the frobnicator" in message, message
    assert "(no output)" not in message
    # what the run directory's log is written from once the container is removed
    assert "cannot open the frobnicator" in svc.last_log
