"""What the supervisor recorded against what runs: `netlab status` reports the processes."""

from __future__ import annotations

import json
import os
import shutil

from netlab.kit.layout import Layout
from netlab.lab import supervisor


def test_a_recorded_pid_counts_only_while_it_is_the_same_process():
    layout = Layout("nlt-status")
    layout.state.mkdir(parents=True)
    try:
        me, started = os.getpid(), supervisor.proc_start(os.getpid())
        row = {"restarts": 0, "lastExit": None, "netns": None}
        layout.status.write_text(json.dumps([
            {**row, "name": "runs", "pid": me, "started": started, "state": "running"},
            {**row, "name": "reused", "pid": me, "started": started - 1, "state": "running"},  # a later process
            {**row, "name": "waiting", "pid": None, "started": None, "state": "backoff"},
        ]))
        st = {r["name"]: r for r in supervisor.read_status("nlt-status")}
        assert (st["runs"]["pid"], st["runs"]["state"]) == (me, "running")
        assert (st["reused"]["pid"], st["reused"]["state"]) == (None, "exited")
        assert st["waiting"]["state"] == "stopped", "no supervisor runs to start it"
        assert supervisor.supervisor_pid("nlt-status") is None
        layout.supervisor_pid.write_text(f"{me} {started - 1}\n")  # our pid, another start: not ours
        assert supervisor.supervisor_pid("nlt-status") is None
    finally:
        shutil.rmtree(layout.state)
    assert supervisor.read_status("nlt-status") is None
