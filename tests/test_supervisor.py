"""The lab supervisor with real programs that crash, hang and exit."""

from __future__ import annotations

import os
import sys
import time

import pytest

from netlab.lab import build as lab, supervisor
from tests.labkit import running_lab

pytestmark = pytest.mark.lab

PY = sys.executable
CRASHER = supervisor.Component("crasher", [PY, "-c", "import sys; print('crashing'); sys.exit(3)"])
EXITER = supervisor.Component("exiter", [PY, "-c", "import time; time.sleep(0.2); print('done')"])
# Ignores SIGTERM: the supervisor must SIGKILL it when the lab goes down.
HANGER = supervisor.Component("hanger", [PY, "-c",
                                         "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                                         "print('hanging', flush=True)\nwhile True: time.sleep(1)"])
NODE_PROG = supervisor.Component("in-node", [PY, "-c",
                                             "import os, time\nprint(os.readlink('/proc/self/ns/net'), flush=True)\n"
                                             "time.sleep(3600)"], "nlts-sup-worker")


def status(name: str) -> dict[str, dict]:
    return {r["name"]: r for r in supervisor.read_status(name) or []}


def wait(pred, timeout=10.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return False


def test_crash_restart_with_backoff_logs_and_stop():
    with running_lab("nlts-sup", nodes=2, components=[CRASHER, EXITER, HANGER, NODE_PROG]) as c:
        assert wait(lambda: status(c.name).get("crasher", {}).get("restarts", 0) >= 2)
        time.sleep(2.0)
        st = status(c.name)
        # backoff doubles from 0.5 s: about 3 restarts in ~3 s, not one per loop turn
        assert 2 <= st["crasher"]["restarts"] <= 5, st["crasher"]
        assert st["crasher"]["lastExit"] == 3
        assert st["exiter"]["restarts"] >= 1 and st["exiter"]["lastExit"] == 0
        assert st["hanger"]["restarts"] == 0 and st["hanger"]["pid"]
        log = (c.state_dir / "logs" / "crasher.log").read_text()
        assert log.count("crashing") >= 2 and "exited with 3" in log
        # the component asked to run in a node runs in that node's namespace
        node_ns = os.stat("/run/netns/nlts-sup-worker").st_ino
        assert wait(lambda: f"net:[{node_ns}]" in (c.state_dir / "logs" / "in-node.log").read_text())
        hanger_pid = st["hanger"]["pid"]
        t = time.monotonic()
        assert supervisor.stop(c.name)
        took = time.monotonic() - t
        assert not os.path.exists(f"/proc/{hanger_pid}") or open(f"/proc/{hanger_pid}/stat").read().split()[2] == "Z"
        assert supervisor.STOP_GRACE - 0.5 < took < supervisor.STOP_GRACE + 2, "the hanger is killed after the grace"
        assert not lab.lab_processes(c.name)


def test_status_and_logs_from_the_cli(capsys):
    from netlab.tools import cli

    with running_lab("nlts-cli", nodes=1, components=[CRASHER]) as c:
        assert wait(lambda: status(c.name).get("crasher", {}).get("restarts", 0) >= 1)
        assert cli.main(["status", "--name", c.name]) == 0
        assert "crasher" in capsys.readouterr().out
        assert cli.main(["logs", "--name", c.name, "crasher"]) == 0
        assert "crashing" in capsys.readouterr().out
        assert cli.main(["logs", "--name", c.name, "nope"]) == 1
        assert "no log for component 'nope'" in capsys.readouterr().err


def test_supervisor_that_cannot_start_a_program_keeps_going():
    bad = supervisor.Component("missing", ["/nonexistent/program"])
    with running_lab("nlts-bad", nodes=1, components=[bad, EXITER]) as c:
        assert wait(lambda: status(c.name).get("exiter", {}).get("restarts", 0) >= 1)
        assert status(c.name)["missing"]["state"] in ("failed", "backoff")
        assert "cannot start" in (c.state_dir / "logs" / "missing.log").read_text()
