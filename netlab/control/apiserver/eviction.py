"""pods/eviction (a policy/v1 Eviction POSTed to a pod), as upstream's EvictionREST does it: a pod
that is terminal, pending or already being deleted goes at once; otherwise the one
PodDisruptionBudget that selects it must allow a disruption, which the eviction takes (its
disruptionsAllowed less one, the pod in its disruptedPods) before the pod gets the
DisruptionTarget condition and is deleted. Refusals are 429 TooManyRequests, which `kubectl drain`
retries."""

from __future__ import annotations

import copy
from typing import Any

from netlab.api.resources import lookup
from netlab.api.selectors import selector_matches
from netlab.control.apiserver.errors import APIError, bad_request
from netlab.control.apiserver.objects import ListOptions, Objects
from netlab.control.pdbhelper import disruption_allowed_condition
from netlab.kit import clock

MAX_DISRUPTED_PODS = 2000  # upstream's MaxDisruptedPodSize
BUDGET_MESSAGE = "Cannot evict pod as it would violate the pod's disruption budget."
EVICTION_VERSIONS = ("policy/v1", "policy/v1beta1")


def success() -> dict:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}


def too_many_requests(cause: str, retry_after: int = 0) -> APIError:
    details: dict[str, Any] = {"causes": [{"reason": "DisruptionBudget", "message": cause}]}
    if retry_after:
        details["retryAfterSeconds"] = retry_after
    return APIError(429, "TooManyRequests", BUDGET_MESSAGE, details)


def evict(objects: Objects, namespace: str, name: str, body: Any, dry_run: bool = False) -> dict:
    """The Status the eviction of pod `namespace/name` answers with (its `code` is the HTTP
    status); a refusal raises APIError."""
    if not isinstance(body, dict) or (body.get("kind") and body.get("kind") != "Eviction") or (
            body.get("apiVersion") and body["apiVersion"] not in EVICTION_VERSIONS):
        raise bad_request(f"not a Eviction object: {type(body).__name__}")
    if (body.get("metadata") or {}).get("name") != name:
        raise bad_request("name in URL does not match name in Eviction object")
    options = body.get("deleteOptions") or {}
    dry_run = dry_run or "All" in (options.get("dryRun") or [])
    pods = lookup("", "v1", "pods")
    pod = objects.get(pods, namespace, name)
    _check_preconditions(pod, options)
    if _can_ignore_budget(pod):
        return _delete(objects, pod, options, dry_run)
    pdbs_r = lookup("policy", "v1", "poddisruptionbudgets")
    labels = pod["metadata"].get("labels") or {}
    budgets = [b for b in objects.list(pdbs_r, namespace, ListOptions())["items"]
               if (b.get("spec") or {}).get("selector") is not None and selector_matches(b["spec"]["selector"], labels)]
    if len(budgets) > 1:
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "This pod has more than one PodDisruptionBudget, which the eviction subresource does not "
                           "support.", "code": 500}
    if budgets:
        pdb = budgets[0]
        status = pdb.get("status") or {}
        spared = False
        if not _ready(pod):
            # an unready pod adds nothing to the budget: it may go when the budget is met (or always)
            if (pdb.get("spec") or {}).get("unhealthyPodEvictionPolicy") == "AlwaysAllow":
                spared = True
            elif status.get("currentHealthy", 0) >= status.get("desiredHealthy", 0) > 0:
                spared = True
        if not spared:
            _take_disruption(objects, pdbs_r, pdb, name, dry_run)
    return _delete(objects, pod, options, dry_run)


def _ready(pod: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def _can_ignore_budget(pod: dict) -> bool:
    """A pod that is terminal or pending disrupts nothing more; one being deleted is going anyway."""
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed", "Pending") or \
        bool(pod["metadata"].get("deletionTimestamp"))


def _check_preconditions(pod: dict, options: dict) -> None:
    pre = options.get("preconditions") or {}
    meta = pod["metadata"]
    if pre.get("uid") and pre["uid"] != meta.get("uid"):
        raise APIError(409, "Conflict", f'Operation cannot be fulfilled on Pod "{meta["name"]}": the UID in the '
                       f"precondition ({pre['uid']}) does not match the UID in record ({meta.get('uid')}). The object "
                       "might have been deleted and then recreated", {"name": meta["name"], "kind": "Pod"})
    if pre.get("resourceVersion") and pre["resourceVersion"] != meta.get("resourceVersion"):
        raise APIError(409, "Conflict", f'Operation cannot be fulfilled on Pod "{meta["name"]}": the ResourceVersion '
                       f"in the precondition ({pre['resourceVersion']}) does not match the ResourceVersion in record "
                       f"({meta.get('resourceVersion')}). The object might have been modified",
                       {"name": meta["name"], "kind": "Pod"})


def _take_disruption(objects: Objects, pdbs_r, pdb: dict, pod_name: str, dry_run: bool) -> None:
    """upstream's checkAndDecrement: refuse unless the budget allows a disruption, then take it."""
    meta, status = pdb["metadata"], copy.deepcopy(pdb.get("status") or {})
    if status.get("observedGeneration", 0) < meta.get("generation", 1):
        raise too_many_requests(f"The disruption budget {meta['name']} is still being processed by the server.", 10)
    allowed = status.get("disruptionsAllowed", 0)
    if allowed < 0:
        raise APIError(403, "Forbidden", f'poddisruptionbudget.policy "{meta["name"]}" is forbidden: pdb disruptions '
                       "allowed is negative", {"name": meta["name"], "group": "policy", "kind": "poddisruptionbudget"})
    if len(status.get("disruptedPods") or {}) > MAX_DISRUPTED_PODS:
        raise APIError(403, "Forbidden", f'poddisruptionbudget.policy "{meta["name"]}" is forbidden: DisruptedPods map '
                       "too big - too many evictions not confirmed by PDB controller",
                       {"name": meta["name"], "group": "policy", "kind": "poddisruptionbudget"})
    if allowed == 0:
        raise too_many_requests(f"The disruption budget {meta['name']} needs {status.get('desiredHealthy', 0)} healthy "
                                f"pods and has {status.get('currentHealthy', 0)} currently")
    status["disruptionsAllowed"] = allowed - 1
    if status["disruptionsAllowed"] == 0:
        status["conditions"] = disruption_allowed_condition(status)
    if dry_run:
        return
    status.setdefault("disruptedPods", {})[pod_name] = clock.now()
    objects.update(pdbs_r, meta["namespace"], meta["name"], dict(pdb, status=status), sub="status")


def _delete(objects: Objects, pod: dict, options: dict, dry_run: bool) -> dict:
    """The DisruptionTarget condition, then the delete with the eviction's options."""
    if dry_run:
        return success()
    pods = lookup("", "v1", "pods")
    meta = pod["metadata"]
    st = copy.deepcopy(pod.get("status") or {})
    conds = st.setdefault("conditions", [])
    want = {"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI",
            "message": "Eviction API: evicting"}
    cur = next((c for c in conds if c.get("type") == "DisruptionTarget"), None)
    if cur is None:
        conds.append({**want, "lastProbeTime": None, "lastTransitionTime": clock.now()})
    elif any(cur.get(k) != v for k, v in want.items()):
        if cur.get("status") != "True":
            cur["lastTransitionTime"] = clock.now()
        cur.update(want)
    if st != (pod.get("status") or {}):
        objects.update(pods, meta["namespace"], meta["name"], dict(pod, status=st), sub="status")
    grace = options.get("gracePeriodSeconds")
    policy = options.get("propagationPolicy")
    if options.get("orphanDependents") is True:
        policy = "Orphan"
    objects.delete(pods, meta["namespace"], meta["name"], None if grace is None else int(grace), policy)
    return success()
