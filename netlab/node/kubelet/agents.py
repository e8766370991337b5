"""The node's agents as pods: a hostNetwork pod in kube-system whose template names a supervisor
component in its `netlab.dev/node-agent` annotation (the kube-proxy, cni-agent, netpol-agent and
lb-speaker DaemonSets that `netlab up` installs) is that component's process on this node, as a
kubeadm node's kube-proxy pod is its kube-proxy.

The process is the supervisor's (`kube-proxy-<node>`: it starts with the node, before any pod
could, and the supervisor's watchdog and adoption keep it), so this worker starts nothing: it
reports the process (status.json's pid and start time) as the pod's container, running or in
back-off with its restarts since the pod came; `kubectl logs` reads the component's log from its
current run; deleting the pod stops the process (SIGTERM to its session), which the supervisor
starts again, and the DaemonSet controller makes the next pod, as on a real node."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import os
import signal

from netlab.api.client import ApiError, event
from netlab.kit import clock
from netlab.node.kubelet import runtime
from netlab.node.workloads import image_name

log = logging.getLogger("netlab.kubelet")
ANNOTATION = "netlab.dev/node-agent"
NAMESPACE = "kube-system"
TICK = 1.0  # how often the component's record is read again


def component_of(pod: dict, node: str) -> str | None:
    """The supervisor component a pod stands for on `node` (`kube-proxy` -> `kube-proxy-<node>`),
    or None for an ordinary pod. Only kube-system's hostNetwork pods: a user's pod cannot claim an agent."""
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    name = (meta.get("annotations") or {}).get(ANNOTATION)
    if not name or meta.get("namespace") != NAMESPACE or not spec.get("hostNetwork"):
        return None
    return f"{name}-{node}"


def started_at(start_ticks: int) -> str:
    """A process's start (clock ticks after boot) as an RFC 3339 time."""
    with open("/proc/stat") as f:
        btime = next(int(line.split()[1]) for line in f if line.startswith("btime "))
    when = datetime.datetime.fromtimestamp(btime + start_ticks / os.sysconf("SC_CLK_TCK"), datetime.timezone.utc)
    return when.strftime(clock.SECONDS)


class AgentContainer:
    """What the kubelet's API (logs, exec) asks of a container: its name, state and process."""

    def __init__(self, spec: dict):
        self.spec, self.name, self.init, self.ephemeral = spec, spec["name"], False, False
        self.state: dict = {"waiting": {"reason": "ContainerCreating"}}
        self.last_state: dict = {}
        self.proc: runtime.Process | None = None
        self.env: dict[str, str] = {}
        self.security, self.cgroup = None, None


class AgentWorker:
    """The pod worker of a node agent's pod (the kubelet's PodWorker interface)."""

    def __init__(self, kubelet, pod: dict, component: str):
        self.k, self.pod, self.component = kubelet, pod, component
        meta = pod["metadata"]
        self.uid, self.name, self.ns = meta["uid"], meta["name"], meta["namespace"]
        self.where = kubelet.node_layout.pod(self.uid)
        self.dir = runtime.PodDir(self.where)
        self.log_path = kubelet.layout.log(component)
        self.wake = asyncio.Event()
        self.task: asyncio.Task | None = None
        specs = (pod.get("spec") or {}).get("containers") or [{"name": component}]
        self.containers = [AgentContainer(specs[0])]
        self.last_status: dict | None = None
        st = self.dir.state()
        self.base = st.get("restartsBase")  # the component's restarts when the pod came: its restartCount counts from there
        self.start_time = st.get("startTime")

    # the PodWorker interface the kubelet calls; an agent mounts nothing of the API's
    def uses(self, kind: str, name: str) -> bool:
        return False

    def configmap_came(self, name: str, kind: str = "configMap") -> None:
        pass

    async def refresh_volumes(self) -> None:
        pass

    def update(self, pod: dict) -> None:
        self.pod = pod
        self.wake.set()

    def record(self) -> dict | None:
        """The component's row in the supervisor's status.json (None: no such component here)."""
        with contextlib.suppress(OSError, ValueError):
            for row in json.loads(self.k.layout.status.read_text()):
                if row.get("name") == self.component:
                    return row
        return None

    def process(self, row: dict | None) -> runtime.Process | None:
        if row and row.get("pid") and runtime.proc_start(row["pid"]) == row.get("started"):
            return runtime.Process(row["pid"], row["started"])
        return None

    async def run(self) -> None:
        while True:
            if self.pod["metadata"].get("deletionTimestamp") or self.k.gone(self.uid):
                await self.terminate()
                return
            self.wake.clear()
            await self.report()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.wake.wait(), TICK)

    # --- status ----------------------------------------------------------------------------

    def status(self) -> dict:
        row = self.record()
        proc = self.process(row)
        c = self.containers[0]
        image = c.spec.get("image", "")
        if self.base is None and row is not None:
            self.base, self.start_time = row.get("restarts", 0), clock.now()
            self.where.logs.mkdir(parents=True, exist_ok=True)
            self.dir.save({"pod": f"{self.ns}/{self.name}", "agent": self.component, "restartsBase": self.base,
                           "startTime": self.start_time})
        restarts = max(0, (row or {}).get("restarts", 0) - (self.base or 0))
        if proc is not None:
            c.proc = proc
            c.state = {"running": {"startedAt": started_at(proc.started)}}
        else:
            c.proc = None
            if row is None:
                c.state = {"waiting": {"reason": "ContainerCreating",
                                       "message": f"no {self.component} component runs on this node"}}
            else:
                c.state = {"waiting": {"reason": "CrashLoopBackOff", "message":
                                       f"back-off restarting failed container={c.name} pod={self.name}_{self.ns}"
                                       f"({self.uid})"}}
        if restarts and row is not None and row.get("lastExit") is not None:
            c.last_state = {"terminated": {"exitCode": row["lastExit"], "reason": "Error" if row["lastExit"] else
                                           "Completed"}}
        ready = proc is not None
        cstatus = {"name": c.name, "image": image, "imageID": f"netlab://{image_name(image)}", "ready": ready,
                   "restartCount": restarts, "started": ready, "state": c.state, "lastState": c.last_state}
        if proc is not None:
            cstatus["containerID"] = f"netlab://{self.component}-{proc.pid}"
        old = {x["type"]: x for x in (self.last_status or self.pod.get("status") or {}).get("conditions") or []}

        def cond(t: str, ok: bool, reason: str = "", message: str = "") -> dict:
            status = "True" if ok else "False"
            prev = old.get(t)
            out = {"type": t, "status": status, "lastProbeTime": None,
                   "lastTransitionTime": prev["lastTransitionTime"] if prev and prev.get("status") == status
                   and prev.get("lastTransitionTime") else clock.now()}
            if not ok:
                out["reason"], out["message"] = reason, message
            return out
        unready = ("ContainersNotReady", f"containers with unready status: [{c.name}]")
        out = {"phase": "Running" if ready or restarts else "Pending",
               "conditions": [cond("PodReadyToStartContainers", row is not None), cond("Initialized", True),
                              cond("Ready", ready, *unready), cond("ContainersReady", ready, *unready),
                              old.get("PodScheduled") or cond("PodScheduled", True)],
               "hostIP": self.k.node_ip, "hostIPs": [{"ip": self.k.node_ip}],
               "podIP": self.k.node_ip, "podIPs": [{"ip": self.k.node_ip}],
               "qosClass": (self.pod.get("status") or {}).get("qosClass", "BestEffort"),
               "containerStatuses": [cstatus]}
        if self.start_time:
            out["startTime"] = self.start_time
        return out

    async def report(self) -> None:
        status = self.status()
        if status == self.last_status:
            return
        body = dict(self.pod, status=status)
        body["metadata"] = dict(self.pod["metadata"])
        body["metadata"].pop("resourceVersion", None)
        try:
            await self.k.client.update("pods", body, subresource="status")
            self.last_status = status
        except ApiError as e:
            if e.status == 404:
                self.k.forget(self.uid)
            else:
                log.warning("pod %s/%s: status update failed: %s", self.ns, self.name, e)

    # --- deletion: the process is stopped, and the supervisor starts it again ------------------

    async def terminate(self) -> None:
        meta = self.pod["metadata"]
        proc = self.process(self.record())
        if meta.get("deletionTimestamp") and proc is not None:
            log.info('Killing node agent pod="%s/%s" component="%s" pid=%d', self.ns, self.name, self.component,
                     proc.pid)
            with contextlib.suppress(ApiError):
                await self.k.client.create("events", event(dict(self.pod, kind="Pod", apiVersion="v1"), "Killing",
                                                           f"Stopping container {self.containers[0].name}",
                                                           component="kubelet", host=self.k.node))
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)  # its own session: the component and what it forked
        self.dir.remove()
        if meta.get("deletionTimestamp"):
            try:
                await self.k.client.request("DELETE", f"/api/v1/namespaces/{self.ns}/pods/{self.name}",
                                            {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0,
                                             "preconditions": {"uid": self.uid}})
            except ApiError as e:
                if e.status != 404:
                    raise

    # --- logs ------------------------------------------------------------------------------

    def log_span(self, previous: bool = False) -> tuple[int, int | None] | None:
        """The part of the component's log that is its current run (start, None: to the end), or
        the run before (start, end); None if there is none. A run begins after the supervisor's
        `--- <time> starting ...` line."""
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return None
        starts, at = [], 0  # (where the marker line begins, where the run's own lines begin)
        while (i := data.find(b"--- ", at)) >= 0:
            end = data.find(b"\n", i)
            end = len(data) if end < 0 else end + 1
            if (i == 0 or data[i - 1:i] == b"\n") and b" starting " in data[i:end]:
                starts.append((i, end))
            at = i + 4
        if previous:
            return (starts[-2][1], starts[-1][0]) if len(starts) >= 2 else None
        return (starts[-1][1] if starts else 0), None
