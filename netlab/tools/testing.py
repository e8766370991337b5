"""A running lab for scripts and tests: up, the API (or kubectl) against it, wait for pods, run commands inside
a pod's container, and send or sniff packets in a pod with scapy.

    with Lab("demo", nodes=3) as lab:
        lab.apply("examples/web.yaml")
        pods = lab.wait_ready("app=web", count=3)
        print(lab.exec(pods[0], ["curl", "-s", "web"]).stdout)

The pytest plugin (netlab.tools.pytest_plugin) hands tests a session-wide one as the `netlab_lab`
fixture.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from netlab.api.client import Client, apply, manifest_objects, resource_for
from netlab.kit import net, pace
from netlab.kit.cluster import Cluster
from netlab.lab import build as lab_mod
from netlab.tools.packets import Sniffer, send


class Lab:
    def __init__(self, name: str = "netlab", nodes: int = 3, cluster: Cluster | None = None, **networking: str):
        self.cluster = cluster or Cluster.from_dict({"networking": networking} if networking else {}, name=name,
                                                    nodes=nodes)
        self.name = self.cluster.name
        self.home = Path(tempfile.mkdtemp(prefix="netlab-kube-"))  # kubectl's cache, per lab

    # --- life ------------------------------------------------------------------------------

    def up(self) -> Lab:
        self.cluster = lab_mod.up(self.cluster)  # with free subnets where another lab holds the defaults
        self.wait(lambda: len([n for n in self.items("nodes") if _ready(n)]) == len(self.cluster.nodes),
                  timeout=60, what="all nodes Ready")
        # cluster DNS: its readiness probe passes on its second try, 10 s in (kubeadm's period)
        self.wait_ready("k8s-app=kube-dns", namespace="kube-system", count=1, timeout=60)
        return self

    def down(self) -> None:
        lab_mod.down(self.name)

    def __enter__(self) -> Lab:
        try:
            return self.up()
        except BaseException:
            self.down()
            raise

    def __exit__(self, *exc: object) -> None:
        self.down()

    @property
    def kubeconfig(self) -> Path:
        return self.cluster.layout.kubeconfig

    # --- the API through kubectl -----------------------------------------------------------

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 60) -> subprocess.CompletedProcess:
        env = dict(os.environ, KUBECONFIG=str(self.kubeconfig), HOME=str(self.home))
        p = subprocess.run(["kubectl", *args], input=input, capture_output=True, text=True, env=env,
                           timeout=pace.scaled(timeout))
        if check and p.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {p.stderr.strip()}")
        return p

    def api(self, fn: Callable[[Client], Awaitable[Any]]) -> Any:
        """Run `fn(client)` with an API client for the lab (the same one every component uses)."""
        async def go():
            async with Client.from_kubeconfig(self.kubeconfig) as client:
                return await fn(client)
        return asyncio.run(go())

    def apply(self, manifest: str | Path, namespace: str | None = None) -> str:
        """Apply a manifest file, or YAML text; kubectl's lines (`deployment.apps/web created`)."""
        is_file = isinstance(manifest, Path) or ("\n" not in manifest and Path(manifest).exists())
        objs = manifest_objects(Path(manifest).read_text() if is_file else manifest, namespace or "default")

        async def go(client):
            return [await apply(client, o) for o in objs]
        return "\n".join(self.api(go)) + "\n"

    def items(self, kind: str, namespace: str | None = "default", selector: str = "") -> list[dict]:
        resource = resource_for(kind)
        return self.api(lambda c: c.list(resource, namespace, selector or None))["items"]

    def get(self, kind: str, name: str, namespace: str = "default") -> dict:
        resource = resource_for(kind)
        return self.api(lambda c: c.get(resource, name, namespace))

    @staticmethod
    def wait(pred: Callable[[], Any], timeout: float = 30, what: str = "condition", interval: float = 0.1) -> Any:
        timeout = pace.scaled(timeout)
        end = time.monotonic() + timeout
        last = None
        while time.monotonic() < end:
            last = pred()
            if last:
                return last
            time.sleep(interval)
        raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")

    def wait_ready(self, selector: str, namespace: str = "default", count: int | None = None,
                   timeout: float = 60) -> list[dict]:
        """The pods matching `selector` once (at least `count` of) them are Ready."""
        def ready():
            pods = [p for p in self.items("pods", namespace, selector) if not p["metadata"].get("deletionTimestamp")]
            ok = [p for p in pods if _ready(p)]
            return ok if ok and len(ok) == len(pods) and (count is None or len(ok) >= count) else None
        return self.wait(ready, timeout, f"pods {selector} Ready")

    # --- component logs --------------------------------------------------------------------

    def log_marks(self) -> dict[Path, int]:
        """How long each component's log is now, for `logs_since`."""
        marks = {}
        for path in self.cluster.layout.logs.glob("*.log"):
            if path.stem == "audit":  # a line a request: `netlab logs audit` reads it, a failure's report does not
                continue
            with contextlib.suppress(OSError):
                marks[path] = path.stat().st_size
        return marks

    def logs_since(self, marks: dict[Path, int], lines: int = 40) -> str:
        """What each component logged since `marks` (its last `lines` lines): what a failed test shows."""
        out = []
        for path in sorted(self.cluster.layout.logs.glob("*.log")):
            try:
                with open(path, "rb") as f:
                    f.seek(marks.get(path, 0))
                    new = f.read().decode(errors="replace").splitlines()
            except OSError:  # the lab went down meanwhile
                continue
            if new:
                out += [f"--- {path.stem} ({len(new)} lines since the test began)", *new[-lines:]]
        return "\n".join(out)

    # --- inside pods -----------------------------------------------------------------------

    def _pod(self, pod: dict | str, namespace: str) -> dict:
        return self.get("pods", pod, namespace) if isinstance(pod, str) else pod

    def pod_netns(self, pod: dict | str, namespace: str = "default") -> str:
        return self.cluster.layout.pod_netns(self._pod(pod, namespace)["metadata"]["uid"])

    def container_pid(self, pod: dict | str, container: str | None = None, namespace: str = "default") -> int:
        p = self._pod(pod, namespace)
        files = self.cluster.layout.node(p["spec"]["nodeName"]).pod(p["metadata"]["uid"])
        state = json.loads(files.state.read_text())
        name = container or p["spec"]["containers"][0]["name"]
        return state["containers"][name]["proc"]["pid"]

    def exec(self, pod: dict | str, argv: list[str], container: str | None = None, namespace: str = "default",
             timeout: float = 30, check: bool = False) -> subprocess.CompletedProcess:
        """Run a command as if in the container: its network, hostname, IPC, processes and root."""
        pid = self.container_pid(pod, container, namespace)
        return subprocess.run(["nsenter", f"--target={pid}", "--net", "--uts", "--ipc", "--pid", "--mount", "--", *argv],
                              capture_output=True, text=True, timeout=pace.scaled(timeout), check=check)

    def link(self, node: str, delay: float | str | None = None, jitter: float | str | None = None,
             loss: float | str | None = None, rate: str | None = None) -> str:
        """Impair `node`'s uplink (what it sends to the node network): delay and jitter in ms, loss in
        percent, a rate as tc writes it (10mbit); none of them: the link as it was. Netem and tbf do
        it (netlab.kit.net.NetError names the module where the kernel lacks one). Returns what the
        kernel now has on the link (`tc qdisc show`)."""
        from netlab.kit import impair

        ns = self.cluster.node(node).netns
        net.link_impair(ns, "eth0", impair.impairment(delay, jitter, loss, rate))
        return net.link_qdiscs(ns, "eth0")

    def node_exec(self, node: str, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
        return net.run(self.cluster.node(node).netns, argv, check=False, **kwargs)

    # --- the outside: a machine on the nodes' network that is not a node ---------------------

    @property
    def outside_netns(self) -> str:
        return self.cluster.layout.outside_netns

    @property
    def outside_ip(self) -> str:
        return self.cluster.outside_ip

    def outside_exec(self, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
        """Run a command on the outside (as `netlab exec outside -- CMD`): it reaches the nodes
        and the LoadBalancer addresses over the node network, and nothing else."""
        return net.run(self.outside_netns, argv, check=False, **kwargs)

    def send(self, pod: dict | str, packet: Any, namespace: str = "default", **kwargs: Any) -> None:
        """Send a scapy packet from inside a pod."""
        send(self.pod_netns(pod, namespace), packet, **kwargs)

    def sniff(self, pod: dict | str, bpf: str = "", count: int = 1, timeout: float = 3.0, iface: str = "eth0",
              namespace: str = "default") -> Sniffer:
        """A context manager capturing in a pod: `with lab.sniff(pod, "udp port 53") as s: ...; s.packets`."""
        return Sniffer(self.pod_netns(pod, namespace), iface, bpf, count, timeout)


def _ready(obj: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (obj.get("status") or {}).get("conditions") or [])
