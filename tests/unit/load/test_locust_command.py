"""``qiki-harness locust`` command lines: shipped locustfile, the user's own, the host."""

from __future__ import annotations

import sys

from harness.load.locust_run import DEFAULT_LOCUSTFILE, GATES_PLUGIN, locust_command


def test_shipped_locustfile_by_default() -> None:
    argv = locust_command(["--headless", "-u", "2"], env={})
    assert argv[:3] == [sys.executable, "-m", "locust"]
    assert argv[3:] == ["-f", str(DEFAULT_LOCUSTFILE), "--headless", "-u", "2"]


def test_users_file_gets_the_gates_plugin_first() -> None:
    for given, expected in ((["-f", "mine.py"], ["-f", f"{GATES_PLUGIN},mine.py"]),
                            (["--locustfile", "a.py,b.py"],
                             ["--locustfile", f"{GATES_PLUGIN},a.py,b.py"]),
                            (["--locustfile=mine.py"], [f"--locustfile={GATES_PLUGIN},mine.py"]),
                            (["-fmine.py"], [f"-f{GATES_PLUGIN},mine.py"])):
        assert locust_command([*given, "--headless"], env={})[3:] == [*expected, "--headless"]
    # a worker that takes the master's files is left alone
    assert locust_command(["--worker", "-f", "-"], env={})[3:] == ["--worker", "-f", "-"]
    env_file = locust_command([], env={"LOCUST_LOCUSTFILE": "mine.py"})
    assert env_file[3:] == ["-f", f"{GATES_PLUGIN},mine.py"]


def test_host_defaults_to_qiki_nats_url() -> None:
    env = {"QIKI_NATS_URL": "nats://127.0.0.1:4222"}
    assert locust_command([], env=env)[-2:] == ["--host", "nats://127.0.0.1:4222"]
    assert "nats://127.0.0.1:4222" not in locust_command(["-H", "nats://x:1"], env=env)
    assert "nats://127.0.0.1:4222" not in locust_command(["--host=nats://x:1"], env=env)
    assert "--host" not in locust_command([], env={**env, "LOCUST_HOST": "nats://y:2"})
