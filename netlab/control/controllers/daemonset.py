"""The DaemonSet controller, as upstream's: one pod on every node the template may run on (its
nodeName, nodeSelector and required node affinity, and its tolerations against the node's
NoSchedule and NoExecute taints, with the tolerations every daemon pod gets added), bound to its
node by a required node affinity on the field metadata.name for the scheduler to honour; a pod
on a node added later, none left on a node it may no longer run on; failed pods replaced; the
template's history in ControllerRevisions (`controller-revision-hash`); rolling updates within
maxUnavailable, or maxSurge (the new pod first, the old one once the new is available), or none
(OnDelete); and the status `kubectl get ds` and `kubectl rollout status` read."""

from __future__ import annotations

import copy
import math
import time

from netlab.api.client import ApiError
from netlab.control import placement
from netlab.control.controllers.base import Controller, controller_of, matches, owner_ref, pod_ready, split_key
from netlab.control.controllers.deployment import template_hash
from netlab.control.controllers.history import History, new_revision, next_revision, template_patch
from netlab.control.controllers.replicaset import available

REVISION_LABEL = "controller-revision-hash"
GENERATION_LABEL = "pod-template-generation"
TEMPLATE_GENERATION = "deprecated.daemonset.template.generation"
# upstream's AddOrUpdateDaemonPodTolerations, in its order
DAEMON_TOLERATIONS = [
    {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
    {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/pid-pressure", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]
NETWORK_UNAVAILABLE = {"key": "node.kubernetes.io/network-unavailable", "operator": "Exists", "effect": "NoSchedule"}


def daemon_pod_spec(template_spec: dict) -> dict:
    """The template's pod spec with the tolerations every daemon pod carries."""
    spec = copy.deepcopy(template_spec)
    tolerations = list(spec.get("tolerations") or [])
    extra = DAEMON_TOLERATIONS + ([NETWORK_UNAVAILABLE] if spec.get("hostNetwork") else [])
    for t in extra:
        same = next((i for i, x in enumerate(tolerations) if x.get("key") == t["key"]
                     and x.get("effect") == t["effect"]), None)
        if same is None:
            tolerations.append(dict(t))
        else:
            tolerations[same] = dict(t)
    spec["tolerations"] = tolerations
    return spec


def bind_to_node(spec: dict, node: str) -> None:
    """upstream's ReplaceDaemonSetPodNodeNameNodeAffinity: the required node affinity becomes one
    term matching the node's name, which the scheduler honours."""
    term = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}
    node_affinity = spec.setdefault("affinity", {}).setdefault("nodeAffinity", {})
    node_affinity.setdefault("requiredDuringSchedulingIgnoredDuringExecution", {})["nodeSelectorTerms"] = [term]


def target_node(pod: dict) -> str | None:
    """The node a daemon pod is for: its nodeName, or the one its node affinity names."""
    spec = pod.get("spec") or {}
    if spec.get("nodeName"):
        return spec["nodeName"]
    terms = (((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution") or {}).get("nodeSelectorTerms") or []
    for term in terms:
        for f in term.get("matchFields") or []:
            if f.get("key") == "metadata.name" and f.get("operator") == "In" and len(f.get("values") or []) == 1:
                return f["values"][0]
    return None


def should_run(ds: dict, node: dict) -> tuple[bool, bool]:
    """(should a daemon pod run on `node`, may one already there keep running), as upstream's
    NodeShouldRunDaemonPod: node name and affinity first, then the node's own taints."""
    spec = daemon_pod_spec(((ds.get("spec") or {}).get("template") or {}).get("spec") or {})
    if spec.get("nodeName") and spec["nodeName"] != node["metadata"]["name"]:
        return False, False
    if not placement.required_affinity_matches(spec, node):
        return False, False
    taints = (node.get("spec") or {}).get("taints") or []
    if placement.untolerated(spec.get("tolerations"), taints, ("NoSchedule", "NoExecute")):
        return False, placement.untolerated(spec.get("tolerations"), taints, ("NoExecute",)) is None
    return True, True


def oldest_first(pods: list[dict]) -> list[dict]:
    """upstream's podByCreationTimestampAndPhase: scheduled pods first, then the oldest."""
    return sorted(pods, key=lambda p: (not (p.get("spec") or {}).get("nodeName"),
                                       p["metadata"].get("creationTimestamp", ""), p["metadata"]["name"]))


def resolve(value, total: int) -> int:
    """An int-or-percent of the desired count, rounded up as the DaemonSet controller rounds both."""
    if isinstance(value, str) and value.endswith("%"):
        return math.ceil(int(value[:-1]) * total / 100)
    return int(value or 0)


class DaemonSetController(Controller):
    name = "daemonset-controller"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.sets = ctx.informer("daemonsets")
        self.pods = ctx.informer("pods", "controller", "namespace")
        self.nodes = ctx.informer("nodes")
        self.revisions = ctx.informer("controllerrevisions", "controller")
        self.history = History(self.client, self.revisions)
        self.sets.add_handler(self.enqueue_obj, self.enqueue_obj, None)
        self.pods.add_handler(self._pod_changed, lambda old, new: self._pod_changed(new), self._pod_changed)
        self.nodes.add_handler(self._all, self._node_updated, self._all)
        # Expectations, as upstream: pods this controller made or deleted that the informer has
        # not shown yet, so a sync does not act twice on the same node.
        self.expect: dict[str, tuple[set[str], set[str], float]] = {}

    def _all(self, *_: object) -> None:
        for ds in self.sets.list():
            self.enqueue_obj(ds)

    def _node_updated(self, old: dict, new: dict) -> None:
        """Only a node's labels and taints decide what runs there (not its heartbeats)."""
        def view(n: dict) -> tuple:
            return n["metadata"].get("labels"), (n.get("spec") or {}).get("taints")
        if view(old) != view(new):
            self._all()

    def _pod_changed(self, pod: dict) -> None:
        ref = controller_of(pod)
        ns = pod["metadata"]["namespace"]
        if ref and ref.get("kind") == "DaemonSet":
            self.enqueue(f"{ns}/{ref['name']}")
        elif ref is None:
            for ds in self.sets.list():
                if ds["metadata"]["namespace"] == ns and matches((ds.get("spec") or {}).get("selector"),
                                                                 pod["metadata"].get("labels")):
                    self.enqueue_obj(ds)

    def _expectations_met(self, key: str) -> bool:
        adds, dels, since = self.expect.get(key, (set(), set(), 0.0))
        ns, _ = split_key(key)
        adds = {n for n in adds if self.pods.get(ns, n) is None}
        dels = {n for n in dels if self.pods.get(ns, n) is not None
                and not self.pods.get(ns, n)["metadata"].get("deletionTimestamp")}
        if not adds and not dels or time.monotonic() - since > 5:
            self.expect.pop(key, None)
            return True
        self.expect[key] = (adds, dels, since)
        return False

    # --- the pods it owns -------------------------------------------------------------------

    async def _claim(self, ds: dict) -> list[dict]:
        uid = ds["metadata"]["uid"]
        selector = (ds.get("spec") or {}).get("selector")
        out = [p for p in self.pods.by_index("controller", uid) if matches(selector, p["metadata"].get("labels"))]
        if ds["metadata"].get("deletionTimestamp"):
            return out
        for p in self.pods.by_index("namespace", ds["metadata"]["namespace"]):
            if controller_of(p) is None and not p["metadata"].get("deletionTimestamp") \
                    and matches(selector, p["metadata"].get("labels")):
                refs = list(p["metadata"].get("ownerReferences") or []) + [owner_ref(ds)]
                try:
                    out.append(await self.client.patch("pods", p["metadata"]["name"],
                                                       {"metadata": {"ownerReferences": refs}},
                                                       p["metadata"]["namespace"]))
                except ApiError as e:
                    if e.status not in (404, 409):
                        raise
        return out

    # --- history ----------------------------------------------------------------------------

    async def _history(self, ds: dict) -> tuple[dict, str]:
        """The revision of the template now (made, or an older one renumbered the newest) and
        its hash, as upstream's constructHistory."""
        revisions = self.history.owned(ds)
        data = template_patch(ds)
        same = [r for r in revisions if r.get("data") == data]
        for dup in same[:-1]:  # one revision per template
            try:
                await self.client.delete("controllerrevisions", dup["metadata"]["name"], dup["metadata"]["namespace"])
            except ApiError as e:
                if e.status != 404:
                    raise
        status = ds.get("status") or {}
        collisions = status.get("collisionCount", 0)
        if same:
            cur = same[-1]
            if cur is not revisions[-1]:
                cur = await self.history.renumber(cur, next_revision(revisions))
        else:
            h = template_hash(ds["spec"]["template"], collisions)
            labels = ((ds["spec"]["template"].get("metadata") or {}).get("labels")) or {}
            rev = new_revision(ds, data, next_revision(revisions), labels, h, REVISION_LABEL)
            try:
                cur = await self.history.create(rev)
            except ApiError as e:
                if e.status == 409:  # someone else's revision has this name: count the collision
                    st = dict(status, collisionCount=collisions + 1)
                    await self.client.update("daemonsets", dict(ds, status=st), subresource="status")
                raise
        return cur, (cur["metadata"].get("labels") or {}).get(REVISION_LABEL, "")

    # --- the sync ---------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        ns, name = split_key(key)
        ds = self.sets.get(ns, name)
        if ds is None:
            self.expect.pop(key, None)
            return
        if ds["metadata"].get("deletionTimestamp"):
            return
        pods = await self._claim(ds)
        cur, hash_ = await self._history(ds)
        nodes = {n["metadata"]["name"]: n for n in self.nodes.list()}
        by_node: dict[str | None, list[dict]] = {}
        for p in pods:
            by_node.setdefault(target_node(p), []).append(p)
        if self._expectations_met(key):
            delete, create = self._manage(ds, nodes, by_node, hash_)
            strategy = (ds["spec"].get("updateStrategy") or {})
            if strategy.get("type", "RollingUpdate") == "RollingUpdate" and not delete and not create:
                delete, create = self._roll(ds, nodes, by_node, hash_)
            await self._sync_nodes(ds, key, delete, create, hash_)
        live = {cur["metadata"]["name"]} | {f"{name}-{(p['metadata'].get('labels') or {}).get(REVISION_LABEL)}"
                                            for p in pods}
        await self.history.truncate(ds, self.history.owned(ds), live)
        await self._status(ds, nodes, by_node, hash_)

    def _manage(self, ds: dict, nodes: dict[str, dict], by_node: dict, hash_: str) -> tuple[list[dict], list[str]]:
        """upstream's podsShouldBeOnNode over every node: (pods to delete, nodes needing a pod)."""
        delete: list[dict] = []
        create: list[str] = []
        surge = self._max_surge(ds, nodes) > 0
        min_ready = ds["spec"].get("minReadySeconds", 0)
        for node_name, node in nodes.items():
            run, keep = should_run(ds, node)
            pods = by_node.get(node_name, [])
            if run and not pods:
                create.append(node_name)
            elif keep:
                running = []
                for p in pods:
                    if p["metadata"].get("deletionTimestamp"):
                        continue
                    phase = (p.get("status") or {}).get("phase")
                    if phase in ("Failed", "Succeeded"):
                        delete.append(p)
                    else:
                        running.append(p)
                if not surge:
                    delete += oldest_first(running)[1:]
                    continue
                if not running:
                    if run:
                        create.append(node_name)
                    continue
                # surging: an old and a new pod may share a node until the new one is available
                new, old = None, None
                for p in oldest_first(running):
                    if (p["metadata"].get("labels") or {}).get(REVISION_LABEL) == hash_:
                        if new is None:
                            new = p
                            continue
                    elif old is None:
                        old = p
                        continue
                    delete.append(p)
                if new is not None and old is not None and (
                        not pod_ready(old) or (pod_ready(new) and available(new, min_ready))):
                    delete.append(old)
            else:
                delete += [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        for node_name, pods in by_node.items():  # pods for nodes that are gone
            if node_name not in nodes:
                delete += [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        return delete, create

    def _desired(self, ds: dict, nodes: dict[str, dict]) -> int:
        return sum(1 for n in nodes.values() if should_run(ds, n)[0])

    def _max_surge(self, ds: dict, nodes: dict[str, dict]) -> int:
        ru = (ds["spec"].get("updateStrategy") or {}).get("rollingUpdate") or {}
        if (ds["spec"].get("updateStrategy") or {}).get("type", "RollingUpdate") != "RollingUpdate":
            return 0
        return resolve(ru.get("maxSurge", 0), self._desired(ds, nodes))

    def _roll(self, ds: dict, nodes: dict[str, dict], by_node: dict, hash_: str) -> tuple[list[dict], list[str]]:
        """upstream's rollingUpdate: (old pods to delete, nodes to surge onto)."""
        ru = (ds["spec"].get("updateStrategy") or {}).get("rollingUpdate") or {}
        desired = self._desired(ds, nodes)
        max_surge = resolve(ru.get("maxSurge", 0), desired)
        max_unavailable = resolve(ru.get("maxUnavailable", 1), desired)
        if not max_surge and not max_unavailable:
            max_unavailable = 1
        min_ready = ds["spec"].get("minReadySeconds", 0)

        def is_available(p: dict) -> bool:
            return pod_ready(p) and available(p, min_ready)

        def split(pods: list[dict]) -> tuple[dict | None, dict | None, bool]:
            new = old = None
            for p in pods:
                if p["metadata"].get("deletionTimestamp"):
                    continue
                if (p["metadata"].get("labels") or {}).get(REVISION_LABEL) == hash_:
                    if new is not None:
                        return None, None, False
                    new = p
                else:
                    if old is not None:
                        return None, None, False
                    old = p
            return new, old, True

        if not max_surge:
            unavailable, replace, candidates = 0, [], []
            for node_name in sorted(n for n in by_node if n is not None):
                new, old, ok = split(by_node[node_name])
                if not ok or (new is None) == (old is None):
                    unavailable += 1  # the manage loop's business: count it as unavailable
                elif new is not None:
                    unavailable += 0 if is_available(new) else 1
                elif not is_available(old):
                    replace.append(old)
                elif unavailable < max_unavailable:
                    candidates.append(old)
            room = max(0, min(max_unavailable - unavailable, len(candidates)))
            return replace + candidates[:room], []
        delete, allowed, candidates, surging = [], [], [], 0
        for node_name in sorted(n for n in by_node if n is not None):
            new, old, ok = split(by_node[node_name])
            if not ok:
                surging += 1
                continue
            if old is None:
                continue
            node = nodes.get(node_name)
            runs = node is not None and should_run(ds, node)[0]
            if new is None:
                if not is_available(old) and not runs:
                    delete.append(old)  # an unavailable pod where none should run any more
                elif not is_available(old):
                    allowed.append(node_name)  # it counts for nothing: replace it at once
                elif runs and surging < max_surge:
                    candidates.append(node_name)
            elif not is_available(new):
                surging += 1
            else:
                delete.append(old)
        room = max(0, min(max_surge - surging, len(candidates)))
        return delete, allowed + candidates[:room]

    def _new_pod(self, ds: dict, node: str, hash_: str) -> dict:
        tmpl = ds["spec"]["template"]
        meta = tmpl.get("metadata") or {}
        labels = dict(meta.get("labels") or {})
        labels[REVISION_LABEL] = hash_
        labels[GENERATION_LABEL] = (ds["metadata"].get("annotations") or {}).get(TEMPLATE_GENERATION, "1")
        spec = daemon_pod_spec(tmpl.get("spec") or {})
        bind_to_node(spec, node)
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"generateName": f"{ds['metadata']['name']}-", "namespace": ds["metadata"]["namespace"],
                            "labels": labels, "ownerReferences": [owner_ref(ds)]},
               "spec": spec}
        for k in ("annotations", "finalizers"):
            if meta.get(k):
                pod["metadata"][k] = copy.deepcopy(meta[k])
        return pod

    async def _sync_nodes(self, ds: dict, key: str, delete: list[dict], create: list[str], hash_: str) -> None:
        made, gone = set(), set()
        for p in delete:
            if (p.get("status") or {}).get("phase") == "Failed":
                await self.event(ds, "FailedDaemonPod", f"Found failed daemon pod {p['metadata']['namespace']}/"
                                 f"{p['metadata']['name']} on node {target_node(p)}, will try to kill it", "Warning")
            try:
                await self.client.delete("pods", p["metadata"]["name"], p["metadata"]["namespace"])
            except ApiError as e:
                if e.status != 404:
                    raise
            gone.add(p["metadata"]["name"])
        for node in create:
            out = await self.client.create("pods", self._new_pod(ds, node, hash_))
            made.add(out["metadata"]["name"])
        if made or gone:
            self.expect[key] = (made, gone, time.monotonic())
        if gone:
            await self.event(ds, "SuccessfulDelete", f"Deleted pod: {', '.join(sorted(gone))}")
        if made:
            await self.event(ds, "SuccessfulCreate", f"Created pod: {', '.join(sorted(made))}")

    # --- status -----------------------------------------------------------------------------

    async def _status(self, ds: dict, nodes: dict[str, dict], by_node: dict, hash_: str) -> None:
        min_ready = ds["spec"].get("minReadySeconds", 0)
        generation = (ds["metadata"].get("annotations") or {}).get(TEMPLATE_GENERATION)
        desired = current = ready = avail = updated = misscheduled = 0
        waiting = False
        for node_name, node in nodes.items():
            run, _ = should_run(ds, node)
            pods = by_node.get(node_name, [])
            if not run:
                misscheduled += 1 if pods else 0
                continue
            desired += 1
            if not pods:
                continue
            current += 1
            pod = oldest_first(pods)[0]
            if pod_ready(pod):
                ready += 1
                if available(pod, min_ready):
                    avail += 1
                else:
                    waiting = True
            labels = pod["metadata"].get("labels") or {}
            if (hash_ and labels.get(REVISION_LABEL) == hash_) or (
                    generation is not None and labels.get(GENERATION_LABEL) == generation):
                updated += 1
        status = {"currentNumberScheduled": current, "numberMisscheduled": misscheduled,
                  "desiredNumberScheduled": desired, "numberReady": ready,
                  "observedGeneration": ds["metadata"].get("generation", 1), "updatedNumberScheduled": updated,
                  "numberAvailable": avail, "numberUnavailable": desired - avail}
        if (ds.get("status") or {}).get("collisionCount"):
            status["collisionCount"] = ds["status"]["collisionCount"]
        # what upstream's JSON omits when zero
        status = {k: v for k, v in status.items() if v or k in ("currentNumberScheduled", "numberMisscheduled",
                                                                "desiredNumberScheduled", "numberReady")}
        if (ds.get("status") or {}) != status:
            await self.client.update("daemonsets", dict(ds, status=status), subresource="status")
        if waiting:
            self.enqueue(f"{ds['metadata']['namespace']}/{ds['metadata']['name']}", min_ready)
