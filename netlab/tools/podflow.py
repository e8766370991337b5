"""The control plane at work: the steps that make a Pod serve, each with when it happened and who
did it, read from the API's own objects and events and from the components' logs.

    netlab explain pod NAME [-n NS]     after the fact: `explain(lab, name, ns)`
    netlab events --follow              live: `follow(lab, ns)`, the watch events of ReplicaSets,
                                        Pods, EndpointSlices and Events, and the log lines below

Before them, the owner (a ReplicaSet) is stored; then:

    1 created     the ReplicaSet controller creates the Pod with its ownerReference
    2 scheduled   the scheduler binds it to a node (PodScheduled condition, Scheduled event)
    3 sandbox     the node's kubelet makes the pod's namespace and pause process
    4 network     CNI ADD gives it an address (the kubelet's `CNI ADD` line, else status.podIP)
    5 started     the kubelet starts its containers (containerStatuses[].state.running.startedAt)
    6 ready       the kubelet writes the status: Ready=True
    7 endpoints   the EndpointSlice controller puts the address, ready, in its Services' slices
    8 rules       kube-proxy on every node programs the Services' rules (`SyncProxyRules complete`)

The API keeps times to the second; the logs (`<date> <time>,<ms> LEVEL logger: message`, local
time, netlab.kit.logs.FORMAT) to the millisecond, so a step that a log line says is timed by it.
`assemble` is the whole logic on recorded inputs; `gather` reads them from a running lab.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass, field
from pathlib import Path

from netlab.kit import clock

LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (\w+) ([\w.-]+): (.*)$")
# the lines of the components that say what happened to one pod (pod="ns/name")
SANDBOX = re.compile(r'Creating PodSandbox pod="(?P<pod>[^"]+)" podUID=(?P<uid>\S+)')
CNI_ADD = re.compile(r'CNI ADD pod="(?P<pod>[^"]+)" podUID=(?P<uid>\S+) ips=(?P<ips>\S*)')
STARTED = re.compile(r'container started pod="(?P<pod>[^"]+)" containerName="(?P<container>[^"]+)"')
SLICE = re.compile(r'(?:created|updated) EndpointSlice (?P<slice>\S+) service="(?P<service>[^"]+)" '
                   r'endpoints=(?P<endpoints>\S*)')
SYNC = re.compile(r'SyncProxyRules complete kind=(?P<kind>\w+) servicePorts=\d+ elapsed=(?P<elapsed>[\d.]+)s '
                  r'services="(?P<services>[^"]*)"')
STEPS = ("created", "scheduled", "sandbox", "network", "started", "ready", "endpoints", "rules")


@dataclass
class LogLine:
    when: datetime.datetime
    component: str
    message: str


@dataclass
class Step:
    step: str  # one of STEPS, or "owner"
    when: datetime.datetime | None
    who: str
    what: str
    rows: list[Step] = field(default_factory=list)  # per node, for the rules
    precise: bool = False  # timed by a log line (ms), not by the API (whole seconds)


def parse_log(component: str, text: str) -> list[LogLine]:
    """A component's log as lines with their times; lines of other shapes (tracebacks) are skipped."""
    out = []
    for line in text.splitlines():
        m = LOG_LINE.match(line)
        if m:
            when = datetime.datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S,%f").astimezone()  # local time
            out.append(LogLine(when, component, m[4]))
    return out


def _t(ts: str | None) -> datetime.datetime | None:
    return clock.parse(ts) if ts else None


def _cond(pod: dict, type_: str) -> dict:
    return next((c for c in (pod.get("status") or {}).get("conditions") or [] if c.get("type") == type_), {})


def _event_time(e: dict) -> datetime.datetime | None:
    return _t(e.get("eventTime") or e.get("firstTimestamp") or e.get("lastTimestamp"))


def _first(lines: list[LogLine], pattern: re.Pattern, **want: str) -> tuple[LogLine, re.Match] | None:
    for line in lines:
        m = pattern.search(line.message)
        if m and all(m[k] == v for k, v in want.items()):
            return line, m
    return None


def assemble(pod: dict, owner: dict | None, events: list[dict], slices: list[dict],
             logs: dict[str, list[LogLine]], nodes: list[str]) -> list[Step]:
    """The owner and the eight steps of `pod`'s creation, from what the API and the logs hold.
    `events`: the namespace's Events; `slices`: its EndpointSlices; `logs`: each component's
    lines (kube-controller-manager, kube-scheduler, kubelet-<node>, kube-proxy-<node>); `nodes`:
    every node's name, each of whose kube-proxy must program the rules."""
    meta, status = pod["metadata"], pod.get("status") or {}
    ns, name, uid = meta["namespace"], meta["name"], meta["uid"]
    key, node = f"{ns}/{name}", (pod.get("spec") or {}).get("nodeName")
    about = lambda obj_uid: sorted((e for e in events if (e.get("involvedObject") or {}).get("uid") == obj_uid),  # noqa: E731
                                   key=lambda e: _event_time(e) or datetime.datetime.min.replace(tzinfo=datetime.UTC))
    pod_events = about(uid)
    # lines found by the pod's name count from its creation on (a StatefulSet's pod of the same
    # name before it was another pod); the API's second may be up to a second behind the logs
    born = _t(meta.get("creationTimestamp"))
    after = lambda lines: [x for x in lines if born is None or x.when.timestamp() >= born.timestamp() - 1]  # noqa: E731
    kubelet = after(logs.get(f"kubelet-{node}", []))
    steps = []

    ref = next((r for r in meta.get("ownerReferences") or [] if r.get("controller")), None)
    if owner is not None:
        up = next((f" (owned by {r['kind']} {r['name']})" for r in owner["metadata"].get("ownerReferences") or []
                   if r.get("controller")), "")
        steps.append(Step("owner", _t(owner["metadata"].get("creationTimestamp")), "kube-apiserver",
                          f"{owner['kind']} {owner['metadata']['name']} stored{up}"))
    else:
        steps.append(Step("owner", None, "", f"{ref['kind']} {ref['name']} (gone)" if ref else
                          "none: the Pod was created directly, not by a controller"))

    # 1: the controller's SuccessfulCreate event names the pod
    made = next((e for e in about(ref["uid"]) if e.get("reason") == "SuccessfulCreate"
                 and name in e.get("message", "")), None) if ref else None
    by = (made or {}).get("source", {}).get("component") or (f"{ref['kind'].lower()}-controller" if ref else "a client")
    steps.append(Step("created", _t(meta.get("creationTimestamp")), by,
                      f"Pod {name}" + (f", ownerReferences: {ref['kind']}/{ref['name']} controller=true" if ref else "")))

    # 2: the binding
    sched = _cond(pod, "PodScheduled")
    ev = next((e for e in pod_events if e.get("reason") == "Scheduled"), None)
    if sched.get("status") == "True" and node:
        steps.append(Step("scheduled", _t(sched.get("lastTransitionTime")) or (ev and _event_time(ev)),
                          (ev or {}).get("source", {}).get("component") or "default-scheduler",
                          (ev or {}).get("message") or f"bound to {node}"))
    else:
        steps.append(Step("scheduled", None, "default-scheduler",
                          sched.get("message") or "not bound to a node yet"))

    # 3 and 4: the kubelet's sandbox and the address CNI ADD gave it
    sb, cni = _first(kubelet, SANDBOX, uid=uid), _first(kubelet, CNI_ADD, uid=uid)
    ready_to_start = _cond(pod, "PodReadyToStartContainers")
    who = f"kubelet ({node})" if node else "kubelet"
    if sb:
        steps.append(Step("sandbox", sb[0].when, who, "RunPodSandbox: network namespace, then pause process", precise=True))
    elif ready_to_start.get("status") == "True":
        steps.append(Step("sandbox", _t(ready_to_start.get("lastTransitionTime")), who,
                          "PodReadyToStartContainers=True"))
    else:
        steps.append(Step("sandbox", None, who, "no sandbox yet"))
    if cni:
        steps.append(Step("network", cni[0].when, who, f"CNI ADD: {cni[1]['ips'] or 'no address'}", precise=True))
    elif status.get("podIP"):
        steps.append(Step("network", None, who, f"status.podIP {status['podIP']} (the kubelet's log does not say when)"))
    else:
        steps.append(Step("network", None, who, "no address yet"))

    # 5: the containers started; the last of them is when all are
    started = []
    for cs in status.get("containerStatuses") or []:
        line = _first(kubelet, STARTED, pod=key, container=cs["name"])
        at = line[0].when if line else _t(((cs.get("state") or {}).get("running") or {}).get("startedAt"))
        if at:
            started.append((at, cs["name"], bool(line)))
    total = len((pod.get("spec") or {}).get("containers") or [])
    last = max(started) if len(started) == total and started else None
    steps.append(Step("started", last and last[0], who,
                      f"containers started: {', '.join(n for _, n, _ in sorted(started)) or 'none'}"
                      f" ({len(started)}/{total})", precise=bool(last and last[2])))

    # 6: the status the kubelet wrote
    ready = _cond(pod, "Ready")
    steps.append(Step("ready", _t(ready.get("lastTransitionTime")) if ready.get("status") == "True" else None, who,
                      "Ready=True" if ready.get("status") == "True" else
                      f"Ready={ready.get('status', 'Unknown')}: {ready.get('message') or ready.get('reason') or ''}"))

    # 7: the first slice write that has the pod ready (the controller's log), else the slice as it is now
    cm = after(logs.get("kube-controller-manager", []))
    services, first_ready = [], None
    for line in cm:
        m = SLICE.search(line.message)
        if m and any(e.startswith(f"{name}=") and e.endswith(":ready") for e in m["endpoints"].split(",")):
            if m["service"] not in services:
                services.append(m["service"])
                first_ready = first_ready or (line.when, m)
    for s in slices:
        for e in s.get("endpoints") or []:
            svc = f"{ns}/{(s['metadata'].get('labels') or {}).get('kubernetes.io/service-name', '')}"
            if (e.get("targetRef") or {}).get("uid") == uid and (e.get("conditions") or {}).get("ready") \
                    and svc not in services:
                services.append(svc)
    if first_ready:
        steps.append(Step("endpoints", first_ready[0], "endpointslice-controller",
                          f"{first_ready[1]['slice']}: {status.get('podIP')} ready, for " + ", ".join(services),
                          precise=True))
    elif services:
        steps.append(Step("endpoints", None, "endpointslice-controller",
                          f"{status.get('podIP')} ready in the slices of {', '.join(services)}"))
    else:
        steps.append(Step("endpoints", None, "endpointslice-controller",
                          "in no EndpointSlice as ready (no Service selects it, or it is not Ready)"))

    # 8: on each node, kube-proxy's first sync of those Services after the slice was written
    since = first_ready[0] if first_ready else None
    rows = []
    for n in nodes:
        hit = None
        for line in logs.get(f"kube-proxy-{n}", []):
            m = SYNC.search(line.message)
            if m and (since is None or line.when >= since) and set(m["services"].split(",")) & set(services):
                hit = (line, m)
                break
        rows.append(Step("rules", hit[0].when if hit else None, f"kube-proxy ({n})",
                         f"{hit[1]['kind']} sync in {float(hit[1]['elapsed']) * 1000:.0f} ms" if hit else
                         "no sync of them logged", precise=True))
    if not services:
        steps.append(Step("rules", None, "kube-proxy", "no Service rules to program for it"))
    else:
        done = [r.when for r in rows]
        steps.append(Step("rules", max(done) if all(done) else None, "kube-proxy",
                          f"{', '.join(services)} on {sum(map(bool, done))}/{len(nodes)} nodes", rows, precise=True))
    return steps


def render(steps: list[Step]) -> str:
    """The steps as a table: time (local), time since the Pod was created, who, what."""
    from netlab.tools.cli import table

    origin = next((s.when for s in steps if s.step == "created"), None)

    def when(s: Step) -> tuple[str, str]:
        if s.when is None:
            return "-", ""
        local = s.when.astimezone()
        if not s.precise:  # the API's whole seconds: no digits it does not have
            return local.strftime("%H:%M:%S"), (f"+{(s.when - origin).total_seconds():.0f}s" if origin else "")
        return local.strftime("%H:%M:%S.") + f"{local.microsecond // 1000:03d}", \
            (f"+{(s.when - origin).total_seconds():.3f}s" if origin else "")

    rows = []
    for s in steps:
        n = "" if s.step == "owner" else str(STEPS.index(s.step) + 1)
        rows.append([n, s.step, *when(s), s.who, s.what])
        rows += [["", "", *when(r), "  " + r.who, r.what] for r in s.rows]
    return table(["STEP", "WHAT", "TIME", "SINCE POD", "WHO", "DETAIL"], rows)


# --- reading a running lab -------------------------------------------------------------------

def read_logs(log_dir: Path, nodes: list[str]) -> dict[str, list[LogLine]]:
    names = ["kube-controller-manager", "kube-scheduler", *(f"{p}-{n}" for n in nodes for p in ("kubelet", "kube-proxy"))]
    out = {}
    for c in names:
        path = log_dir / f"{c}.log"
        if path.exists():
            out[c] = parse_log(c, path.read_text(errors="replace"))
    return out


def gather(lab, name: str, namespace: str = "default") -> list[Step]:
    """The steps of pod `name` in a running lab (a netlab.tools.testing.Lab)."""
    from netlab.api.client import ApiError

    async def go(c):
        pod = await c.get("pods", name, namespace)
        ref = next((r for r in pod["metadata"].get("ownerReferences") or [] if r.get("controller")), None)
        owner = None
        if ref:
            from netlab.api.client import resource_for

            try:
                owner = await c.get(resource_for(ref["kind"]), ref["name"], namespace)
            except (ApiError, ValueError):
                owner = None
            if owner is not None:
                owner.setdefault("kind", ref["kind"])
        events = (await c.list("events", namespace))["items"]
        slices = (await c.list("endpointslices", namespace))["items"]
        nodes = [n["metadata"]["name"] for n in (await c.list("nodes"))["items"]]
        return pod, owner, events, slices, nodes

    pod, owner, events, slices, nodes = lab.api(go)
    return assemble(pod, owner, events, slices, read_logs(lab.cluster.layout.logs, nodes), nodes)


# --- live ----------------------------------------------------------------------------------------

WATCHED = ("replicasets", "pods", "endpointslices", "events")
FOLLOWED_LINES = (SANDBOX, CNI_ADD, STARTED, SLICE, SYNC)


def describe(resource: str, type_: str, obj: dict) -> str | None:
    """One watch event as a line of `netlab events --follow`, or None for what says nothing new."""
    meta, st = obj.get("metadata") or {}, obj.get("status") or {}
    name = meta.get("name", "")
    if resource == "events":
        if type_ != "ADDED":
            return None
        inv = obj.get("involvedObject") or {}
        src = (obj.get("source") or {}).get("component") or obj.get("reportingComponent") or ""
        return f"Event {inv.get('kind')}/{inv.get('name')} {obj.get('reason')} ({src}): {obj.get('message')}"
    if resource == "replicasets":
        spec = obj.get("spec") or {}
        return (f"ReplicaSet/{name} {type_} replicas={spec.get('replicas')} ready={st.get('readyReplicas', 0)} "
                f"available={st.get('availableReplicas', 0)}")
    if resource == "pods":
        conds = ",".join(c["type"] for c in st.get("conditions") or [] if c.get("status") == "True")
        owner = next((f" owner={r['kind']}/{r['name']}" for r in meta.get("ownerReferences") or []
                      if r.get("controller")), "")
        gone = " deleting" if meta.get("deletionTimestamp") else ""
        return (f"Pod/{name} {type_}{owner} node={(obj.get('spec') or {}).get('nodeName') or '-'} "
                f"ip={st.get('podIP') or '-'} phase={st.get('phase') or '-'} true=[{conds}]{gone}")
    if resource == "endpointslices":
        svc = (meta.get("labels") or {}).get("kubernetes.io/service-name", "")
        eps = " ".join(f"{e['addresses'][0]}({'ready' if (e.get('conditions') or {}).get('ready') else 'notready'})"
                       for e in obj.get("endpoints") or [])
        return f"EndpointSlice/{name} {type_} service={svc} endpoints=[{eps}]"
    return None


async def follow(client, namespace: str | None, log_dir: Path | None, out, stop=None) -> None:
    """Print each watch event of WATCHED in `namespace` (None: all), with the time it came, and
    each component log line that says a step (FOLLOWED_LINES), with the time it was written (read
    every 0.2 s, so it may come after later watch events); until `stop` (an asyncio.Event) is set
    or the caller is cancelled."""
    import asyncio

    def say(who: str, text: str, when: datetime.datetime | None = None) -> None:
        now = (when or datetime.datetime.now().astimezone()).astimezone()  # a log line: when it was written
        out.write(f"{now:%H:%M:%S}.{now.microsecond // 1000:03d}  {who:<24} {text}\n")
        out.flush()

    async def watch(resource: str) -> None:
        listed = await client.list(resource, namespace)  # from now on: what exists is not news
        rv = listed["metadata"]["resourceVersion"]
        while True:
            async for ev in client.watch(resource, namespace, rv):
                obj = ev.get("object") or {}
                if ev.get("type") == "BOOKMARK":
                    rv = obj["metadata"]["resourceVersion"]
                    continue
                if ev.get("type") == "ERROR":  # expired: start again from now
                    rv = (await client.list(resource, namespace))["metadata"]["resourceVersion"]
                    break
                rv = obj["metadata"]["resourceVersion"]
                line = describe(resource, ev["type"], obj)
                if line:
                    say("watch " + resource, line)

    async def tail() -> None:
        offsets: dict[Path, int] = {p: p.stat().st_size for p in log_dir.glob("*.log")}
        while True:
            await asyncio.sleep(0.2)
            for path in sorted(log_dir.glob("*.log")):
                size = path.stat().st_size
                start = offsets.get(path, 0)
                if size <= start:
                    offsets[path] = min(size, start)
                    continue
                with open(path, "rb") as f:
                    f.seek(start)
                    data = f.read(size - start)
                keep = data.rfind(b"\n") + 1  # a line still being written waits for the next round
                offsets[path] = start + keep
                for ll in parse_log(path.stem, data[:keep].decode(errors="replace")):
                    if any(p.search(ll.message) for p in FOLLOWED_LINES):
                        say(path.stem, ll.message, ll.when)

    tasks = [asyncio.create_task(watch(r)) for r in WATCHED]
    if log_dir is not None:
        tasks.append(asyncio.create_task(tail()))
    try:
        if stop is None:
            await asyncio.gather(*tasks)
        else:
            await stop.wait()
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
