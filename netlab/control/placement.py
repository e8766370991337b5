"""Where a pod may run and where it would rather run, as pure functions of the pod, the nodes and
the pods already placed: the rules of upstream's default scheduler plugins (TaintToleration,
NodeAffinity, NodeResourcesFit, PodTopologySpread, InterPodAffinity) with their reasons' wording.
The scheduler filters and scores with them; the DaemonSet controller asks the same questions of
each node."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable

from netlab.api.selectors import selector_matches

NOT_READY_TAINT = {"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"}
UNSCHEDULABLE_TAINT = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}

# the reasons, as upstream's plugins word them
NODE_AFFINITY = "node(s) didn't match Pod's node affinity/selector"
AFFINITY = "node(s) didn't match pod affinity rules"
ANTI_AFFINITY = "node(s) didn't match pod anti-affinity rules"
EXISTING_ANTI_AFFINITY = "node(s) didn't satisfy existing pods anti-affinity rules"
SPREAD = "node(s) didn't match pod topology spread constraints"
SPREAD_LABEL = "node(s) didn't match pod topology spread constraints (missing required label)"
# the reasons preemption could not help with (upstream's UnschedulableAndUnresolvable)
UNRESOLVABLE = {NODE_AFFINITY, AFFINITY, SPREAD_LABEL, "node(s) were unschedulable"}


def name(obj: dict) -> str:
    return obj["metadata"]["name"]


def labels(obj: dict) -> dict:
    return obj["metadata"].get("labels") or {}


# --- taints and tolerations ----------------------------------------------------------------

def tolerates(toleration: dict, taint: dict) -> bool:
    """upstream's Toleration.ToleratesTaint: an empty effect or key matches any, Exists any value."""
    if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
        return False
    if toleration.get("key") and toleration["key"] != taint.get("key"):
        return False
    op = toleration.get("operator") or "Equal"
    if op == "Exists":
        return True
    return op == "Equal" and (toleration.get("value") or "") == (taint.get("value") or "")


def untolerated(tolerations: list[dict] | None, taints: Iterable[dict], effects: tuple[str, ...]) -> dict | None:
    """The first taint with one of `effects` that no toleration tolerates."""
    for t in taints:
        if t.get("effect") in effects and not any(tolerates(tol, t) for tol in tolerations or []):
            return t
    return None


def node_ready(node: dict) -> bool:
    conds = (node.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)


def node_taints(node: dict) -> list[dict]:
    """The node's taints, with the not-ready one upstream's node lifecycle controller would add."""
    taints = list((node.get("spec") or {}).get("taints") or [])
    if not node_ready(node) and not any(t.get("key") == NOT_READY_TAINT["key"] for t in taints):
        taints.append(NOT_READY_TAINT)
    return taints


def taint_text(t: dict) -> str:
    return f"{{{t.get('key', '')}: {t.get('value', '')}}}"


# --- node affinity -------------------------------------------------------------------------

def requirement_matches(req: dict, value: str | None) -> bool:
    """A NodeSelectorRequirement against one label's (or field's) value, None when absent."""
    op, values = req.get("operator"), req.get("values") or []
    if op == "In":
        return value is not None and value in values
    if op == "NotIn":
        return value is None or value not in values
    if op == "Exists":
        return value is not None
    if op == "DoesNotExist":
        return value is None
    if op in ("Gt", "Lt") and value is not None and len(values) == 1:
        try:
            a, b = int(value), int(values[0])
        except ValueError:
            return False
        return a > b if op == "Gt" else a < b
    return False


def term_matches(term: dict, node: dict) -> bool:
    """A NodeSelectorTerm: all its expressions over labels and fields; an empty term matches nothing."""
    exprs, fields = term.get("matchExpressions") or [], term.get("matchFields") or []
    if not exprs and not fields:
        return False
    node_labels = labels(node)
    return all(requirement_matches(r, node_labels.get(r.get("key"))) for r in exprs) and \
        all(requirement_matches(r, name(node) if r.get("key") == "metadata.name" else None) for r in fields)


def required_affinity_matches(pod_spec: dict, node: dict) -> bool:
    """nodeSelector and requiredDuringSchedulingIgnoredDuringExecution (its terms ORed)."""
    node_labels = labels(node)
    if any(node_labels.get(k) != v for k, v in (pod_spec.get("nodeSelector") or {}).items()):
        return False
    required = ((pod_spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution")
    if required is None:
        return True
    return any(term_matches(t, node) for t in required.get("nodeSelectorTerms") or [])


def preferred_affinity_score(pod_spec: dict, node: dict) -> int:
    prefs = ((pod_spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "preferredDuringSchedulingIgnoredDuringExecution") or []
    return sum(p.get("weight", 0) for p in prefs if term_matches(p.get("preference") or {}, node))


# --- resources -----------------------------------------------------------------------------

_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eE][+-]?[0-9]+|[numkMGTPE]|[KMGTPE]i)?$")
_SUFFIX = {"n": 1e-9, "u": 1e-6, "m": 1e-3, "": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
           "Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "Pi": 2 ** 50, "Ei": 2 ** 60}


def quantity(text: object) -> float:
    """A resource.Quantity as a number (`100m` -> 0.1, `1Gi` -> 1073741824); 0 if unreadable."""
    m = _QUANTITY.match(str(text).strip())
    if not m:
        return 0.0
    number, suffix = float(m.group(1)), m.group(2) or ""
    if suffix[:1] in ("e", "E") and len(suffix) > 1:
        return number * 10 ** int(suffix[1:])
    return number * _SUFFIX[suffix]


def _scaled(resource: str, value: float) -> int:
    """cpu in millicores, everything else in whole units, rounded up as upstream's MilliValue/Value."""
    return math.ceil(round(value * 1000 if resource == "cpu" else value, 6))


def pod_requests(pod_spec: dict) -> Counter:
    """What a pod asks of its node: its containers' requests (a limit stands for a missing request),
    or its largest init container's if larger, plus its overhead."""
    def of(c: dict) -> Counter:
        res = c.get("resources") or {}
        merged = {**(res.get("limits") or {}), **(res.get("requests") or {})}
        return Counter({k: _scaled(k, quantity(v)) for k, v in merged.items()})
    total: Counter = Counter()
    for c in pod_spec.get("containers") or []:
        total.update(of(c))
    for c in pod_spec.get("initContainers") or []:
        for k, v in of(c).items():
            total[k] = max(total[k], v)
    total.update(Counter({k: _scaled(k, quantity(v)) for k, v in (pod_spec.get("overhead") or {}).items()}))
    return total


def insufficient(pod_spec: dict, node: dict, placed: list[dict]) -> list[str]:
    """NodeResourcesFit's reasons for `node`, given the pods `placed` on it."""
    status = node.get("status") or {}
    allocatable = status.get("allocatable") or status.get("capacity") or {}
    reasons = []
    if "pods" in allocatable and len(placed) + 1 > quantity(allocatable["pods"]):
        reasons.append("Too many pods")
    want = pod_requests(pod_spec)
    used: Counter = Counter()
    for p in placed:
        used.update(pod_requests(p.get("spec") or {}))
    for resource in sorted(want):
        if want[resource] <= 0:
            continue
        have = _scaled(resource, quantity(allocatable.get(resource, 0)))
        if want[resource] + used[resource] > have:
            reasons.append(f"Insufficient {resource}")
    return reasons


# --- pod affinity and topology spread ------------------------------------------------------

def term_selects(term: dict, owner_ns: str, pod: dict, ns_labels: Callable[[str], dict]) -> bool:
    """A PodAffinityTerm (of a pod in `owner_ns`) selecting `pod`: its namespaces (the owner's by
    default, or those namespaceSelector picks) and its labelSelector (none selects nothing)."""
    ns = pod["metadata"].get("namespace")
    namespaces, ns_sel = term.get("namespaces") or [], term.get("namespaceSelector")
    if ns_sel is None and not namespaces:
        if ns != owner_ns:
            return False
    elif ns not in namespaces and not (ns_sel is not None and selector_matches(ns_sel, ns_labels(ns or ""))):
        return False
    sel = term.get("labelSelector")
    return sel is not None and selector_matches(sel, labels(pod))


def _terms(pod_spec: dict, kind: str, hard: bool) -> list[dict]:
    aff = (pod_spec.get("affinity") or {}).get(kind) or {}
    if hard:
        return aff.get("requiredDuringSchedulingIgnoredDuringExecution") or []
    return aff.get("preferredDuringSchedulingIgnoredDuringExecution") or []


class Cluster:
    """The nodes and the pods placed on them, as one scheduling decision sees them."""

    def __init__(self, nodes: list[dict], pods: list[dict], ns_labels: Callable[[str], dict] = lambda ns: {}):
        self.nodes = {name(n): n for n in nodes}
        self.ns_labels = ns_labels
        self.placed: dict[str, list[dict]] = {}
        for p in pods:
            n = (p.get("spec") or {}).get("nodeName")
            if n and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
                self.placed.setdefault(n, []).append(p)
        # the placed pods whose own anti-affinity may keep a newcomer away
        self.guards = [(n, p) for n, p in self.pods() if _terms(p.get("spec") or {}, "podAntiAffinity", True)]

    def domain(self, node_name: str, key: str) -> str | None:
        node = self.nodes.get(node_name)
        return labels(node).get(key) if node else None

    def pods(self) -> Iterable[tuple[str, dict]]:
        for n, ps in self.placed.items():
            for p in ps:
                yield n, p

    # required inter-pod affinity, in the order upstream's InterPodAffinity checks it
    def affinity_reason(self, pod: dict, node: dict) -> str | None:
        spec, ns = pod.get("spec") or {}, pod["metadata"].get("namespace", "default")
        affinity = _terms(spec, "podAffinity", True)
        if affinity:
            if any(t.get("topologyKey", "") not in labels(node) for t in affinity):
                return AFFINITY  # every term's topology label must be on the node
            # the domains of the pods that match every term, as upstream counts them
            matching = [n for n, p in self.pods()
                        if all(term_selects(t, ns, p, self.ns_labels) for t in affinity)]
            found = {(t.get("topologyKey", ""), self.domain(n, t.get("topologyKey", ""))) for n in matching
                     for t in affinity}
            if not all((t.get("topologyKey", ""), labels(node)[t.get("topologyKey", "")]) in found for t in affinity):
                # the first pod of a group with affinity to itself may go anywhere the keys exist
                if matching or not all(term_selects(t, ns, pod, self.ns_labels) for t in affinity):
                    return AFFINITY
        for term in _terms(spec, "podAntiAffinity", True):
            key = term.get("topologyKey", "")
            value = labels(node).get(key)
            if value is not None and any(self.domain(n, key) == value and term_selects(term, ns, p, self.ns_labels)
                                         for n, p in self.pods()):
                return ANTI_AFFINITY
        for n, p in self.guards:
            for term in _terms(p.get("spec") or {}, "podAntiAffinity", True):
                key = term.get("topologyKey", "")
                value = labels(node).get(key)
                if value is not None and self.domain(n, key) == value and term_selects(
                        term, p["metadata"].get("namespace", "default"), pod, self.ns_labels):
                    return EXISTING_ANTI_AFFINITY
        return None

    def affinity_score(self, pod: dict, node: dict) -> int:
        """Preferred pod affinity weights minus preferred anti-affinity weights, for the pods
        sharing each term's topology domain with `node`."""
        spec, ns = pod.get("spec") or {}, pod["metadata"].get("namespace", "default")
        score = 0
        for kind, sign in (("podAffinity", 1), ("podAntiAffinity", -1)):
            for weighted in _terms(spec, kind, False):
                term = weighted.get("podAffinityTerm") or {}
                key = term.get("topologyKey", "")
                value = labels(node).get(key)
                if value is None:
                    continue
                hits = sum(1 for n, p in self.pods()
                           if self.domain(n, key) == value and term_selects(term, ns, p, self.ns_labels))
                score += sign * weighted.get("weight", 0) * hits
        return score

    # topology spread
    def _spread_counts(self, pod: dict, c: dict, constraints: list[dict]) -> tuple[Counter, dict | None]:
        spec, ns = pod.get("spec") or {}, pod["metadata"].get("namespace", "default")
        sel = _spread_selector(pod, c)
        counts: Counter = Counter()
        for node in self.nodes.values():
            node_labels = labels(node)
            if any(k.get("topologyKey") not in node_labels for k in constraints):
                continue
            if c.get("nodeAffinityPolicy", "Honor") == "Honor" and not required_affinity_matches(spec, node):
                continue
            if c.get("nodeTaintsPolicy", "Ignore") == "Honor" and untolerated(
                    spec.get("tolerations"), node_taints(node), ("NoSchedule", "NoExecute")):
                continue
            value = node_labels[c["topologyKey"]]
            counts[value] += sum(1 for p in self.placed.get(name(node), [])
                                 if p["metadata"].get("namespace") == ns and not p["metadata"].get("deletionTimestamp")
                                 and _selects(sel, p))
        return counts, sel

    def spread_reason(self, pod: dict, node: dict) -> str | None:
        constraints = [c for c in (pod.get("spec") or {}).get("topologySpreadConstraints") or []
                       if c.get("whenUnsatisfiable", "DoNotSchedule") == "DoNotSchedule"]
        for c in constraints:
            if c.get("topologyKey") not in labels(node):
                return SPREAD_LABEL
        for c in constraints:
            counts, sel = self._spread_counts(pod, c, constraints)
            low = min(counts.values(), default=0)
            if c.get("minDomains") and len(counts) < c["minDomains"]:
                low = 0
            skew = counts[labels(node)[c["topologyKey"]]] + (1 if _selects(sel, pod) else 0) - low
            if skew > c.get("maxSkew", 1):
                return SPREAD
        return None

    def spread_penalty(self, pod: dict, node: dict) -> int:
        """ScheduleAnyway constraints: how many matching pods share each domain with `node`."""
        constraints = [c for c in (pod.get("spec") or {}).get("topologySpreadConstraints") or []
                       if c.get("whenUnsatisfiable") == "ScheduleAnyway"]
        total = 0
        for c in constraints:
            counts, _ = self._spread_counts(pod, c, constraints)
            value = labels(node).get(c.get("topologyKey", ""))
            total += counts[value] if value is not None else 0
        return total


def _spread_selector(pod: dict, c: dict) -> dict | None:
    """The constraint's selector with its matchLabelKeys as the pod has them; None (no
    labelSelector) selects nothing."""
    if c.get("labelSelector") is None:
        return None
    sel = dict(c["labelSelector"])
    keys = [k for k in c.get("matchLabelKeys") or [] if k in labels(pod)]
    if keys:
        sel["matchExpressions"] = list(sel.get("matchExpressions") or []) + [
            {"key": k, "operator": "In", "values": [labels(pod)[k]]} for k in keys]
    return sel


def _selects(sel: dict | None, obj: dict) -> bool:
    return sel is not None and selector_matches(sel, labels(obj))
