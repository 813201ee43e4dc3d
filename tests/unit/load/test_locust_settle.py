"""The master waits for a worker marked "missing" (late heartbeats on a loaded machine) before
it reads its final numbers: that worker still runs its users and its last stats follow."""

from __future__ import annotations

import subprocess
import sys

# In a subprocess: importing locust monkeypatches the interpreter (gevent), which the test
# process must not be.
SCRIPT = """
import gevent
from locust.runners import STATE_MISSING, STATE_STOPPED, MasterRunner

from harness.load.locust_users import _stop_and_settle

class Worker:
    state = STATE_MISSING

class Workers:
    all = [Worker()]

class Master(MasterRunner):
    def __init__(self):  # no sockets: only what _stop_and_settle reads
        self.state = "stopping"
        self.clients = Workers()

class Env:
    runner = Master()

worker = Workers.all[0]

def reports_stopped_late():
    gevent.sleep(0.3)
    worker.state = STATE_STOPPED

gevent.spawn(reports_stopped_late)
_stop_and_settle(Env(), timeout_s=10)
print("worker state when the master read its numbers:", worker.state)
"""


def test_master_waits_for_a_missing_worker_to_report_stopped() -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "worker state when the master read its numbers: stopped" in out.stdout, out.stdout
