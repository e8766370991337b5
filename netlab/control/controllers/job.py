"""The Job controller, as upstream's (pkg/controller/job): pods are made from the template, up to
`parallelism` at a time and no more than the completions left, each with the
batch.kubernetes.io/job-tracking finalizer so that no finished pod goes uncounted: a finished pod
is first listed in status.uncountedTerminatedPods, then its finalizer comes off, then it moves
into `succeeded` or `failed`. Failed pods are retried after a back-off (10 s doubling, at most 6
min) until `backoffLimit` is passed; `activeDeadlineSeconds`, the pod failure policy (FailJob,
Ignore, Count) and `suspend` are honoured; Indexed Jobs give each pod its completion index
(annotation, label, JOB_COMPLETION_INDEX, hostname `<job>-<index>`). A Job that meets its end
first gets the interim condition (SuccessCriteriaMet or FailureTarget), and Complete or Failed
once none of its pods is left running.

Also the TTL-after-finished controller, which deletes a finished Job `ttlSecondsAfterFinished`
after it finished."""

from __future__ import annotations

import copy
import datetime
import time
from collections.abc import Callable
from typing import Any

from netlab.api.client import ApiError
from netlab.control.controllers.base import Controller, controller_of, owner_ref, pod_ready, split_key
from netlab.kit import clock

TRACKING_FINALIZER = "batch.kubernetes.io/job-tracking"
INDEX_KEY = "batch.kubernetes.io/job-completion-index"  # the annotation and the label
INDEX_ENV = "JOB_COMPLETION_INDEX"
POD_FAILURE_BACKOFF = 10.0  # seconds: upstream's DefaultJobPodFailureBackOff, doubled per failure
MAX_POD_FAILURE_BACKOFF = 360.0  # six minutes, as the Job documentation gives it
MAX_UNCOUNTED = 500
MAX_GENERATED_NAME = 63 - 5
SLOW_START = 1  # upstream's SlowStartInitialBatchSize
BACKOFF_LIMIT_MESSAGE = "Job has reached the specified backoff limit"
DEADLINE_MESSAGE = "Job was active longer than specified deadline"
COMPLETIONS_MESSAGE = "Reached expected number of succeeded pods"
TERMINAL = ("Succeeded", "Failed")


# --- the pure parts (what a sync decides from the Job, its pods and the time) ----------------

def condition(job: dict, kind: str) -> dict | None:
    return next((c for c in (job.get("status") or {}).get("conditions") or [] if c.get("type") == kind), None)


def is_true(job: dict, kind: str) -> bool:
    c = condition(job, kind)
    return c is not None and c.get("status") == "True"


def finished(job: dict) -> bool:
    return is_true(job, "Complete") or is_true(job, "Failed")


def new_condition(kind: str, reason: str, message: str, now: str, status: str = "True") -> dict:
    c = {"type": kind, "status": status, "lastProbeTime": now, "lastTransitionTime": now}
    if reason:
        c["reason"] = reason
    if message:
        c["message"] = message
    return c


def ensure_condition(conditions: list[dict], kind: str, status: str, reason: str, message: str,
                     now: str) -> tuple[list[dict], bool]:
    """ensureJobConditionStatus: update the condition of `kind`, or append it unless False."""
    for i, c in enumerate(conditions):
        if c.get("type") == kind:
            if c.get("status") != status or c.get("reason", "") != reason or c.get("message", "") != message:
                conditions[i] = new_condition(kind, reason, message, now, status)
                return conditions, True
            return conditions, False
    if status != "False":
        return conditions + [new_condition(kind, reason, message, now, status)], True
    return conditions, False


def has_finalizer(pod: dict) -> bool:
    return TRACKING_FINALIZER in (pod["metadata"].get("finalizers") or [])


def only_replace_failed(job: dict) -> bool:
    spec = job.get("spec") or {}
    return spec.get("podReplacementPolicy") == "Failed" or spec.get("podFailurePolicy") is not None


def is_pod_failed(pod: dict, job: dict) -> bool:
    """A Failed pod; unless only failed pods are replaced, also one deleted before it succeeded."""
    phase = (pod.get("status") or {}).get("phase")
    if phase == "Failed":
        return True
    if only_replace_failed(job):
        return False
    return bool(pod["metadata"].get("deletionTimestamp")) and phase != "Succeeded"


def completion_index(pod: dict) -> int:
    text = (pod["metadata"].get("annotations") or {}).get(INDEX_KEY)
    if text is None or not text.isdigit():
        return -1
    return int(text)


def indexed(job: dict) -> bool:
    return (job.get("spec") or {}).get("completionMode") == "Indexed"


def parse_indexes(text: str, completions: int) -> set[int]:
    out: set[int] = set()
    for part in (text or "").split(","):
        lo, _, hi = part.partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()):
            continue
        first = int(lo)
        if first >= completions:
            break
        out.update(range(first, min(int(hi) if hi else first, completions - 1) + 1))
    return out


def match_success_policy(policy: dict | None, completions: int, succeeded: set[int]) -> str | None:
    """The message of the first rule of an Indexed Job's successPolicy its succeeded indexes meet:
    all of `succeededIndexes`, or `succeededCount` of them (of all indexes, without a list)."""
    if not policy or not succeeded:
        return None
    for i, rule in enumerate(policy.get("rules") or []):
        count = rule.get("succeededCount")
        if rule.get("succeededIndexes") is not None:
            required = parse_indexes(rule["succeededIndexes"], completions)
            if required and (len(required & succeeded) >= count if count is not None else required <= succeeded):
                return f"Matched rules at index {i}"
        elif count is not None and len(succeeded) >= count:
            return f"Matched rules at index {i}"
    return None


def format_indexes(indexes: set[int]) -> str:
    """orderedIntervals.String: `0-2,4,6,7` (a run of two is written with a comma)."""
    runs: list[list[int]] = []
    for i in sorted(indexes):
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    parts = []
    for first, last in runs:
        parts.append(str(first) if first == last else f"{first},{last}" if last == first + 1 else f"{first}-{last}")
    return ",".join(parts)


def match_pod_failure_policy(policy: dict | None, pod: dict) -> tuple[str | None, bool, str | None]:
    """(FailJob message, whether the failure counts toward backoffLimit, the matched action)."""
    if policy is None:
        return None, True, None
    st = pod.get("status") or {}
    meta = pod["metadata"]
    for i, rule in enumerate(policy.get("rules") or []):
        action = rule.get("action")
        codes = rule.get("onExitCodes")
        if codes is not None:
            cs = _matching_container(st.get("containerStatuses") or [], codes) or \
                _matching_container(st.get("initContainerStatuses") or [], codes)
            if cs is None:
                continue
            if action == "Ignore":
                return None, False, action
            if action == "Count":
                return None, True, action
            if action == "FailJob":
                code = cs["state"]["terminated"].get("exitCode")
                return (f"Container {cs.get('name')} for pod {meta.get('namespace')}/{meta['name']} failed with exit "
                        f"code {code} matching {action} rule at index {i}"), True, action
        elif rule.get("onPodConditions") is not None:
            cond = next((c for c in st.get("conditions") or [] for p in rule["onPodConditions"]
                         if c.get("type") == p.get("type") and c.get("status") == p.get("status", "True")), None)
            if cond is None:
                continue
            if action == "Ignore":
                return None, False, action
            if action == "Count":
                return None, True, action
            if action == "FailJob":
                return (f"Pod {meta.get('namespace')}/{meta['name']} has condition {cond.get('type')} matching "
                        f"{action} rule at index {i}"), True, action
    return None, True, None


def _matching_container(statuses: list[dict], req: dict) -> dict | None:
    for cs in statuses:
        term = (cs.get("state") or {}).get("terminated")
        if term is None:
            continue
        if req.get("containerName") is not None and req["containerName"] != cs.get("name"):
            continue
        code = term.get("exitCode", 0)
        if code == 0:
            continue
        values = req.get("values") or []
        if (req.get("operator") == "In" and code in values) or (req.get("operator") == "NotIn" and code not in values):
            return cs
    return None


def finished_time(pod: dict) -> datetime.datetime:
    """getFinishedTime: the last container's end, else the Ready=False transition, else the deletion
    less its grace, else the creation."""
    ends = []
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        term = (cs.get("state") or {}).get("terminated") or {}
        if not term.get("finishedAt"):
            ends = []
            break
        ends.append(clock.parse(term["finishedAt"]))
    if ends:
        return max(ends)
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready" and c.get("status") == "False" and c.get("lastTransitionTime"):
            return clock.parse(c["lastTransitionTime"])
    meta = pod["metadata"]
    if meta.get("deletionTimestamp"):
        return clock.parse(meta["deletionTimestamp"]) - datetime.timedelta(
            seconds=meta.get("deletionGracePeriodSeconds") or 0)
    return clock.parse(meta["creationTimestamp"])


def new_backoff(record: tuple[int, datetime.datetime | None], succeeded: list[dict],
                failed: list[dict]) -> tuple[int, datetime.datetime | None]:
    """backoffStore.newBackoffRecord: failures since the last success, and the last failure's time."""
    count, last = record
    failed_times = sorted(finished_time(p) for p in failed)
    if not succeeded:
        if not failed:
            return record
        return count + len(failed), failed_times[-1]
    last_success = max(finished_time(p) for p in succeeded)
    count, last = 0, None
    for t in reversed(failed_times):
        if t <= last_success:
            break
        last = last or t
        count += 1
    return count, last


def backoff_remaining(failures: int, last_failure: datetime.datetime | None, now: datetime.datetime,
                      base: float = POD_FAILURE_BACKOFF, cap: float = MAX_POD_FAILURE_BACKOFF) -> float:
    """Seconds before a new pod may replace failed ones: base * 2^(failures-1), capped."""
    if failures == 0 or last_failure is None:
        return 0.0
    delay = base
    for _ in range(1, failures):
        delay *= 2
        if delay >= cap:
            delay = cap
            break
    elapsed = (now - last_failure).total_seconds()
    return 0.0 if delay < elapsed else delay - elapsed


def past_backoff_limit_on_failure(job: dict, pods: list[dict]) -> bool:
    """restartPolicy OnFailure: the containers' restarts count against backoffLimit."""
    spec = job.get("spec") or {}
    if ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy") != "OnFailure":
        return False
    restarts = 0
    for p in pods:
        st = p.get("status") or {}
        if st.get("phase") in ("Running", "Pending"):
            restarts += sum(c.get("restartCount", 0) for c in (st.get("initContainerStatuses") or [])
                            + (st.get("containerStatuses") or []))
    limit = spec.get("backoffLimit", 6)
    return restarts > 0 if limit == 0 else restarts >= limit


def removal_rank(p: dict) -> tuple:
    """controller.ActivePods: unscheduled, pending, unready, more restarts and newer pods go first."""
    st = p.get("status") or {}
    restarts = sum(c.get("restartCount", 0) for c in st.get("containerStatuses") or [])
    return (bool((p.get("spec") or {}).get("nodeName")), {"Pending": 0, "Unknown": 1}.get(st.get("phase"), 2),
            pod_ready(p), -restarts, "".join(chr(255 - ord(c)) for c in p["metadata"].get("creationTimestamp", "")))


def pods_for_removal(job: dict, active: list[dict], at_least: int) -> list[dict]:
    """activePodsForRemoval: for Indexed Jobs first the pods without a valid index or repeating
    one, then as many of the rest as needed, in removal order."""
    rm: list[dict] = []
    left = active
    if indexed(job):
        completions = (job.get("spec") or {}).get("completions") or 0
        by_index: dict[int, list[dict]] = {}
        left = []
        for p in active:
            ix = completion_index(p)
            if ix < 0 or ix >= completions:
                rm.append(p)
            else:
                by_index.setdefault(ix, []).append(p)
        for ix in sorted(by_index):
            group = sorted(by_index[ix], key=removal_rank)
            rm += group[:-1]
            left.append(group[-1])
    if len(rm) < at_least:
        rm += sorted(left, key=removal_rank)[:at_least - len(rm)]
    return rm


def first_pending_indexes(succeeded: set[int], pods: list[dict], count: int, completions: int) -> list[int]:
    taken = succeeded | {completion_index(p) for p in pods}
    return [i for i in range(completions) if i not in taken][:count]


def generate_name_with_index(job_name: str, index: int) -> str:
    suffix = f"-{index}-"
    prefix = job_name + suffix
    if len(prefix) > MAX_GENERATED_NAME:
        prefix = prefix[:MAX_GENERATED_NAME - len(suffix)] + suffix
    return prefix


def pod_from_template(job: dict, index: int) -> dict:
    """The pod the Job makes: its template with the tracking finalizer, owned by the Job; for an
    Indexed Job with the index annotation and label, the index in every container's environment
    and the hostname `<job>-<index>`."""
    tmpl = copy.deepcopy((job.get("spec") or {}).get("template") or {})
    tmeta, spec = tmpl.get("metadata") or {}, tmpl.get("spec") or {}
    name = job["metadata"]["name"]
    meta: dict[str, Any] = {"generateName": f"{name}-", "namespace": job["metadata"]["namespace"],
                            "labels": dict(tmeta.get("labels") or {}),
                            "annotations": dict(tmeta.get("annotations") or {}),
                            "finalizers": list(tmeta.get("finalizers") or []), "ownerReferences": [owner_ref(job)]}
    if TRACKING_FINALIZER not in meta["finalizers"]:
        meta["finalizers"].append(TRACKING_FINALIZER)
    if index >= 0:
        for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
            env = c.setdefault("env", [])
            if not any(e.get("name") == INDEX_ENV for e in env):
                env.append({"name": INDEX_ENV, "valueFrom": {"fieldRef": {
                    "fieldPath": f"metadata.labels['{INDEX_KEY}']"}}})
        meta["annotations"][INDEX_KEY] = str(index)
        meta["labels"][INDEX_KEY] = str(index)
        spec["hostname"] = f"{name}-{index}"
        meta["generateName"] = generate_name_with_index(name, index)
    if not meta["annotations"]:
        del meta["annotations"]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


def finish_time(job: dict) -> datetime.datetime | None:
    """When the Job finished: its Complete or Failed condition's transition."""
    at = None
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True" and c.get("lastTransitionTime"):
            at = clock.parse(c["lastTransitionTime"])
    return at


# --- the controller --------------------------------------------------------------------------

class JobController(Controller):
    name = "job-controller"

    def __init__(self, ctx, now: Callable[[], datetime.datetime] = clock.utcnow):
        super().__init__(ctx)
        self.now = now
        self.jobs = ctx.informer("jobs")
        self.pods = ctx.informer("pods", "controller")
        self.jobs.add_handler(self.enqueue_obj, self._job_updated, self._job_deleted)
        self.pods.add_handler(self._pod_changed, lambda old, new: self._pod_changed(new), self._pod_changed)
        # pods made or deleted, and finalizers removed, that the informer has not shown yet
        self.expect: dict[str, tuple[set[str], set[str], float]] = {}
        self.rm_expect: dict[str, set[str]] = {}
        self.backoffs: dict[str, tuple[int, datetime.datetime | None]] = {}

    # --- events ----------------------------------------------------------------------------

    def _job_updated(self, old: dict, new: dict) -> None:
        self.enqueue_obj(new)
        if finished(new):
            self._cleanup_finalizers(new)
        spec, st = new.get("spec") or {}, new.get("status") or {}
        deadline = spec.get("activeDeadlineSeconds")
        if st.get("startTime") and deadline is not None and deadline != (old.get("spec") or {}).get(
                "activeDeadlineSeconds"):
            left = deadline - (self.now() - clock.parse(st["startTime"])).total_seconds()
            self.enqueue(self._key(new), max(left, 0.0))

    def _job_deleted(self, job: dict) -> None:
        self.enqueue_obj(job)
        self._cleanup_finalizers(job)

    def _cleanup_finalizers(self, job: dict) -> None:
        for p in self.pods.by_index("controller", job["metadata"]["uid"]):
            if has_finalizer(p):
                self.enqueue(f"orphan:{self._key(p)}")

    def _pod_changed(self, pod: dict) -> None:
        ref = controller_of(pod)
        ns = pod["metadata"]["namespace"]
        job = self.jobs.get(ns, ref["name"]) if ref and ref.get("kind") == "Job" else None
        if job is not None and job["metadata"]["uid"] != ref.get("uid"):
            job = None
        if job is None or finished(job):
            if has_finalizer(pod):
                self.enqueue(f"orphan:{self._key(pod)}")
            return
        self.enqueue(self._key(job))

    @staticmethod
    def _key(obj: dict) -> str:
        return f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"

    # --- expectations ----------------------------------------------------------------------

    def _expectations_met(self, key: str) -> bool:
        adds, dels, since = self.expect.get(key, (set(), set(), 0.0))
        ns, _ = split_key(key)
        adds = {n for n in adds if self.pods.get(ns, n) is None}
        dels = {n for n in dels if (p := self.pods.get(ns, n)) is not None and not p["metadata"].get("deletionTimestamp")}
        if not adds and not dels or time.monotonic() - since > 5:
            self.expect.pop(key, None)
            return True
        self.expect[key] = (adds, dels, since)
        return False

    def _expected_rm(self, key: str, pods: list[dict]) -> set[str]:
        """uids whose finalizer this controller removed and the informer still shows."""
        waiting = self.rm_expect.get(key, set())
        still = {p["metadata"]["uid"] for p in pods if p["metadata"]["uid"] in waiting and has_finalizer(p)}
        if still:
            self.rm_expect[key] = still
        else:
            self.rm_expect.pop(key, None)
        return still

    # --- sync ------------------------------------------------------------------------------

    async def sync(self, key: str) -> None:
        if key.startswith("orphan:"):
            await self._sync_orphan(key[len("orphan:"):])
            return
        ns, name = split_key(key)
        shared = self.jobs.get(ns, name)
        if shared is None:
            self.expect.pop(key, None)
            self.rm_expect.pop(key, None)
            self.backoffs.pop(key, None)
            return
        if finished(shared):
            self.backoffs.pop(key, None)
            return
        job = copy.deepcopy(shared)
        spec = job.setdefault("spec", {})
        if spec.get("completionMode") not in (None, "NonIndexed", "Indexed"):
            await self.event(job, "UnknownCompletionMode", "Skipped Job sync because completion mode is unknown",
                             "Warning")
            return
        await _Sync(self, key, job).run()

    async def _sync_orphan(self, key: str) -> None:
        ns, name = split_key(key)
        pod = self.pods.get(ns, name)
        if pod is None or not has_finalizer(pod):
            return
        ref = controller_of(pod)
        if ref is not None:
            if ref.get("kind") != "Job" or ref.get("apiVersion") != "batch/v1":
                return  # another owner's pod
            job = self.jobs.get(ns, ref["name"])
            if job is not None and job["metadata"]["uid"] == ref.get("uid") and not finished(job):
                return  # its Job counts it
        await self.remove_finalizer(pod)

    async def remove_finalizer(self, pod: dict) -> bool:
        try:
            await self.client.patch("pods", pod["metadata"]["name"],
                                     {"metadata": {"$deleteFromPrimitiveList/finalizers": [TRACKING_FINALIZER]}},
                                     pod["metadata"]["namespace"], "strategic")
        except ApiError as e:
            if e.status != 404:
                raise
        return True

    async def write_status(self, job: dict) -> dict:
        return await self.client.update("jobs", job, subresource="status")


class _Sync:
    """One syncJob: the Job's copy, its pods, and what this sync has found."""

    def __init__(self, c: JobController, key: str, job: dict):
        self.c, self.key, self.job = c, key, job
        self.spec = job["spec"]
        self.status = job.setdefault("status", {})
        self.now = c.now()
        self.now_text = self.now.strftime(clock.SECONDS)

    async def run(self) -> None:
        c, job, spec, status = self.c, self.job, self.spec, self.status
        uncounted = status.get("uncountedTerminatedPods") or {}
        status["uncountedTerminatedPods"] = {k: list(v) for k, v in uncounted.items() if v}
        self.uncounted_succeeded = set(uncounted.get("succeeded") or [])
        self.uncounted_failed = set(uncounted.get("failed") or [])
        satisfied = c._expectations_met(self.key)
        pods = [p for p in c.pods.by_index("controller", job["metadata"]["uid"])]
        self.pods = pods
        active = [p for p in pods if (p.get("status") or {}).get("phase") not in TERMINAL
                  and not p["metadata"].get("deletionTimestamp")]
        self.active_pods = active
        self.ready = sum(1 for p in active if pod_ready(p))
        self.terminating = sum(1 for p in pods if p["metadata"].get("deletionTimestamp")
                               and (p.get("status") or {}).get("phase") not in TERMINAL)
        self.expected_rm = c._expected_rm(self.key, pods)
        n_active = len(active)
        new_succeeded = self._new_finished(lambda p: (p.get("status") or {}).get("phase") == "Succeeded",
                                           self.uncounted_succeeded)
        new_failed = self._new_finished(lambda p: is_pod_failed(p, job), self.uncounted_failed)
        counted_failed = [p for p in new_failed if match_pod_failure_policy(spec.get("podFailurePolicy"), p)[1]]
        self.succeeded = status.get("succeeded", 0) + len(new_succeeded) + len(self.uncounted_succeeded)
        self.failed = status.get("failed", 0) + len(counted_failed) + len(self.uncounted_failed)
        suspended = spec.get("suspend") is True
        if not status.get("startTime") and not suspended:
            status["startTime"] = self.now_text
        self.new_backoff = new_backoff(c.backoffs.get(self.key, (0, None)), new_succeeded, new_failed)

        finished_cond = condition(job, "SuccessCriteriaMet") if is_true(job, "SuccessCriteriaMet") else None
        if finished_cond is None:
            target = condition(job, "FailureTarget")
            if target is not None and target.get("status") == "True":
                finished_cond = new_condition("Failed", target.get("reason", ""), target.get("message", ""),
                                              self.now_text)
            elif (message := self._fail_job_message()) is not None:
                finished_cond = new_condition("FailureTarget", "PodFailurePolicy", message, self.now_text)
        if finished_cond is None:
            deadline = spec.get("activeDeadlineSeconds")
            if self.failed > spec.get("backoffLimit", 6) or past_backoff_limit_on_failure(job, pods):
                finished_cond = new_condition("FailureTarget", "BackoffLimitExceeded", BACKOFF_LIMIT_MESSAGE,
                                              self.now_text)
            elif self._past_deadline():
                finished_cond = new_condition("FailureTarget", "DeadlineExceeded", DEADLINE_MESSAGE, self.now_text)
            elif deadline is not None and not suspended:
                left = deadline - (self.now - clock.parse(status["startTime"])).total_seconds()
                c.enqueue(self.key, max(left, 0.0))
        if indexed(job):
            completions = spec.get("completions") or 0
            self.prev_indexes = parse_indexes(status.get("completedIndexes", ""), completions)
            self.succeeded_indexes = self.prev_indexes | {
                completion_index(p) for p in pods if (p.get("status") or {}).get("phase") == "Succeeded"
                and 0 <= completion_index(p) < completions and has_finalizer(p)}
            self.succeeded = len(self.succeeded_indexes)
            if finished_cond is None and (msg := match_success_policy(spec.get("successPolicy"), completions,
                                                                      self.succeeded_indexes)):
                finished_cond = new_condition("SuccessCriteriaMet", "SuccessPolicy", msg, self.now_text)
        suspend_changed = False
        if finished_cond is not None:
            deleted_ready, deleted = await self._delete_active(active)
            if deleted != n_active or not satisfied:
                finished_cond = None  # not yet: pods still to go, or to show up
            n_active -= deleted
            self.terminating += deleted
            self.ready -= deleted_ready
        else:
            managed = False
            if satisfied and not job["metadata"].get("deletionTimestamp"):
                n_active = await self._manage(n_active)
                managed = True
            completions = spec.get("completions")
            if completions is None:
                complete = self.succeeded > 0 and n_active == 0
            else:
                complete = self.succeeded >= completions and n_active == 0
            if complete:
                finished_cond = new_condition("SuccessCriteriaMet", "CompletionsReached", COMPLETIONS_MESSAGE,
                                              self.now_text)
            elif managed:
                conds = status.get("conditions") or []
                if suspended:
                    conds, suspend_changed = ensure_condition(conds, "Suspended", "True", "JobSuspended",
                                                              "Job suspended", self.now_text)
                    if suspend_changed:
                        await c.event(job, "Suspended", "Job suspended")
                else:
                    conds, suspend_changed = ensure_condition(conds, "Suspended", "False", "JobResumed",
                                                              "Job resumed", self.now_text)
                    if suspend_changed:
                        await c.event(job, "Resumed", "Job resumed")
                        status["startTime"] = self.now_text  # the deadline counts from the resumption
                if conds:
                    status["conditions"] = conds
        needs_flush = (suspend_changed or n_active != status.get("active", 0) or self.ready != status.get("ready")
                       or self.terminating != status.get("terminating"))
        _set(status, "active", n_active)
        status["ready"] = self.ready
        status["terminating"] = self.terminating
        await self._track(finished_cond, needs_flush)

    def _new_finished(self, pred, uncounted: set[str]) -> list[dict]:
        out = []
        completions = self.spec.get("completions") or 0
        for p in self.pods:
            uid = p["metadata"]["uid"]
            if not has_finalizer(p) or uid in uncounted or uid in self.expected_rm:
                continue
            if indexed(self.job) and not 0 <= completion_index(p) < completions:
                continue
            if pred(p):
                out.append(p)
        return out

    def _fail_job_message(self) -> str | None:
        policy = self.spec.get("podFailurePolicy")
        if policy is None:
            return None
        for p in self.pods:
            if is_pod_failed(p, self.job):
                message = match_pod_failure_policy(policy, p)[0]
                if message is not None:
                    return message
        return None

    def _past_deadline(self) -> bool:
        deadline, start = self.spec.get("activeDeadlineSeconds"), self.status.get("startTime")
        if deadline is None or not start or self.spec.get("suspend") is True:
            return False
        return (self.now - clock.parse(start)).total_seconds() >= deadline

    # --- pods ------------------------------------------------------------------------------

    async def _delete_active(self, pods: list[dict]) -> tuple[int, int]:
        """Delete active pods, their finalizers kept (the counting removes them)."""
        ready = deleted = 0
        for p in pods:
            try:
                await self.c.client.delete("pods", p["metadata"]["name"], p["metadata"]["namespace"])
            except ApiError as e:
                if e.status != 404:
                    continue
            deleted += 1
            ready += pod_ready(p)
            await self.c.event(self.job, "SuccessfulDelete", f"Deleted pod: {p['metadata']['name']}")
        return ready, deleted

    async def _delete_pods(self, pods: list[dict]) -> tuple[int, int]:
        """deleteJobPods: the finalizer off first (the pod is not to be counted), then delete."""
        ready = deleted = 0
        for p in pods:
            try:
                await self.c.remove_finalizer(p)
                await self.c.client.delete("pods", p["metadata"]["name"], p["metadata"]["namespace"])
            except ApiError as e:
                if e.status != 404:
                    continue
            deleted += 1
            ready += pod_ready(p)
            await self.c.event(self.job, "SuccessfulDelete", f"Deleted pod: {p['metadata']['name']}")
        return ready, deleted

    async def _manage(self, n_active: int) -> int:
        """manageJob: as many active pods as wanted, no more, respecting the failure back-off."""
        c, job, spec = self.c, self.job, self.spec
        parallelism = spec.get("parallelism", 1)
        if spec.get("suspend") is True:
            victims = pods_for_removal(job, self.active_pods, n_active)
            c.expect[self.key] = (set(), {p["metadata"]["name"] for p in victims}, time.monotonic())
            ready, removed = await self._delete_pods(victims)
            self.terminating += removed
            self.ready -= ready
            return n_active - removed
        completions = spec.get("completions")
        if completions is None:
            want = n_active if self.succeeded > 0 else parallelism
        else:
            want = max(0, min(completions - self.succeeded, parallelism))
        victims = pods_for_removal(job, self.active_pods, max(0, n_active - want))[:500]
        if victims:
            c.expect[self.key] = (set(), {p["metadata"]["name"] for p in victims}, time.monotonic())
            ready, removed = await self._delete_pods(victims)
            self.terminating += removed
            self.ready -= ready
            return n_active - removed
        terminating = self.terminating if only_replace_failed(job) else 0
        diff = want - terminating - n_active
        if diff <= 0:
            return n_active
        remaining = backoff_remaining(self.new_backoff[0], self.new_backoff[1], self.now)
        if remaining > 0:
            c.enqueue(self.key, max(remaining, 1.0))
            return n_active
        diff = min(diff, 500)
        indexes: list[int] = []
        if indexed(job):
            indexes = first_pending_indexes(self.succeeded_indexes, self.active_pods + (
                [p for p in self.pods if p["metadata"].get("deletionTimestamp")
                 and (p.get("status") or {}).get("phase") not in TERMINAL] if only_replace_failed(job) else []),
                diff, completions or 0)
            diff = len(indexes)
        made: set[str] = set()
        batch = min(diff, SLOW_START)
        while diff > 0:
            for _ in range(batch):
                ix = indexes.pop(0) if indexes else -1
                try:
                    out = await c.client.create("pods", pod_from_template(job, ix))
                except ApiError as e:
                    if e.status == 403 and "being terminated" in e.message:
                        return n_active  # the namespace is going: so are we
                    await c.event(job, "FailedCreate", f"Error creating: {e.message}", "Warning")
                    c.expect[self.key] = (made, set(), time.monotonic())
                    raise
                made.add(out["metadata"]["name"])
                n_active += 1
                await c.event(job, "SuccessfulCreate", f"Created pod: {out['metadata']['name']}")
            diff -= batch
            batch = min(2 * batch, diff)
        c.expect[self.key] = (made, set(), time.monotonic())
        return n_active

    # --- counting --------------------------------------------------------------------------

    async def _track(self, finished_cond: dict | None, needs_flush: bool) -> None:
        """trackJobStatusAndRemoveFinalizers: list finished pods as uncounted, take their
        finalizers off, count them, and finish the Job when nothing is left uncounted or running."""
        c, job, status = self.c, self.job, self.status
        is_indexed = indexed(job)
        completions = self.spec.get("completions") or 0
        with_finalizer = {p["metadata"]["uid"] for p in self.pods
                          if has_finalizer(p) and p["metadata"]["uid"] not in self.expected_rm}
        needs_flush |= _clean_uncounted(status, with_finalizer)
        uncounted = status.setdefault("uncountedTerminatedPods", {})
        to_remove: list[dict] = []
        new_indexes: set[int] = set()
        pods = sorted(self.pods, key=completion_index) if is_indexed else self.pods
        for p in pods:
            uid = p["metadata"]["uid"]
            if not has_finalizer(p) or uid in self.expected_rm:
                continue
            failed = is_pod_failed(p, job)
            phase = (p.get("status") or {}).get("phase")
            if not (job["metadata"].get("deletionTimestamp") or finished_cond is not None or phase == "Succeeded"
                    or failed):
                continue
            to_remove.append(p)
            ix = completion_index(p)
            if phase == "Succeeded" and uid not in self.uncounted_failed:
                if is_indexed:
                    if 0 <= ix < completions and ix not in self.prev_indexes:
                        new_indexes.add(ix)
                        needs_flush = True
                elif uid not in self.uncounted_succeeded:
                    uncounted.setdefault("succeeded", []).append(uid)
                    self.uncounted_succeeded.add(uid)
                    needs_flush = True
            elif failed or (finished_cond is not None and finished_cond["type"] != "SuccessCriteriaMet"):
                if uid not in self.uncounted_failed and (not is_indexed or 0 <= ix < completions):
                    if match_pod_failure_policy(self.spec.get("podFailurePolicy"), p)[1]:
                        uncounted.setdefault("failed", []).append(uid)
                        self.uncounted_failed.add(uid)
                        needs_flush = True
            if len(new_indexes) + len(uncounted.get("succeeded") or []) + len(uncounted.get("failed") or []) \
                    >= MAX_UNCOUNTED:
                break
        if is_indexed:
            self.succeeded_indexes |= new_indexes
            text = format_indexes(self.succeeded_indexes)
            if text != status.get("completedIndexes", ""):
                needs_flush = True
            _set(status, "succeeded", len(self.succeeded_indexes))
            _set(status, "completedIndexes", text)
        if finished_cond is not None and finished_cond["type"] == "FailureTarget":
            status["conditions"] = (status.get("conditions") or []) + [finished_cond]
            needs_flush = True
            finished_cond = new_condition("Failed", finished_cond.get("reason", ""), finished_cond.get("message", ""),
                                          self.now_text)
        if finished_cond is not None and finished_cond["type"] == "SuccessCriteriaMet":
            if not is_true(job, "SuccessCriteriaMet"):
                status["conditions"] = (status.get("conditions") or []) + [finished_cond]
                needs_flush = True
            finished_cond = new_condition("Complete", finished_cond.get("reason", ""),
                                          finished_cond.get("message", ""), self.now_text)
        if needs_flush:
            await self._flush()
            needs_flush = False
        c.backoffs[self.key] = self.new_backoff
        if to_remove:
            waiting = c.rm_expect.setdefault(self.key, set())
            for p in to_remove:
                waiting.add(p["metadata"]["uid"])
                await c.remove_finalizer(p)
                with_finalizer.discard(p["metadata"]["uid"])
        needs_flush |= _clean_uncounted(self.status, with_finalizer)
        done = self._finish(finished_cond)
        if needs_flush or done:
            await self._flush()
            if done:
                await self._record_finished(finished_cond)

    def _finish(self, cond: dict | None) -> bool:
        """enactJobFinished: the terminal condition, once nothing is uncounted or terminating."""
        if cond is None:
            return False
        uncounted = self.status.get("uncountedTerminatedPods") or {}
        if uncounted.get("succeeded") or uncounted.get("failed") or self.status.get("terminating", 0) > 0:
            return False
        conds, _ = ensure_condition(self.status.get("conditions") or [], cond["type"], "True", cond.get("reason", ""),
                                    cond.get("message", ""), self.now_text)
        self.status["conditions"] = conds
        if cond["type"] == "Complete":
            self.status["completionTime"] = self.now_text
        return True

    async def _record_finished(self, cond: dict) -> None:
        job, spec = self.job, self.spec
        if cond["type"] == "Complete":
            if spec.get("completions") is not None and self.status.get("succeeded", 0) > spec["completions"]:
                await self.c.event(job, "TooManySucceededPods",
                                   "Too many succeeded pods running after completion count reached", "Warning")
            await self.c.event(job, "Completed", "Job completed")
        else:
            await self.c.event(job, cond.get("reason", ""), cond.get("message", ""), "Warning")

    async def _flush(self) -> None:
        status = self.status
        uncounted = status.get("uncountedTerminatedPods") or {}
        status["uncountedTerminatedPods"] = {k: v for k, v in uncounted.items() if v}
        self.job["status"] = status
        out = await self.c.write_status(self.job)
        self.job["metadata"]["resourceVersion"] = out["metadata"]["resourceVersion"]


def _set(status: dict, key: str, value: Any) -> None:
    """Counters and strings the API omits when empty."""
    if value:
        status[key] = value
    else:
        status.pop(key, None)


def _clean_uncounted(status: dict, with_finalizer: set[str]) -> bool:
    """Move uncounted pods whose finalizer is gone into the counters."""
    changed = False
    uncounted = status.setdefault("uncountedTerminatedPods", {})
    for kind, counter in (("succeeded", "succeeded"), ("failed", "failed")):
        uids = uncounted.get(kind) or []
        keep = [u for u in uids if u in with_finalizer]
        if len(keep) != len(uids):
            changed = True
            _set(status, counter, status.get(counter, 0) + len(uids) - len(keep))
            uncounted[kind] = keep
    return changed


class TTLAfterFinishedController(Controller):
    """Deletes a finished Job (and, in the foreground, its pods) ttlSecondsAfterFinished after it
    finished."""
    name = "ttl-after-finished-controller"

    def __init__(self, ctx, now: Callable[[], datetime.datetime] = clock.utcnow):
        super().__init__(ctx)
        self.now = now
        self.jobs = ctx.informer("jobs")
        self.jobs.add_handler(self._changed, lambda old, new: self._changed(new), None)

    def _changed(self, job: dict) -> None:
        if (job.get("spec") or {}).get("ttlSecondsAfterFinished") is not None and finished(job) \
                and not job["metadata"].get("deletionTimestamp"):
            self.enqueue_obj(job)

    def expires_in(self, job: dict) -> float | None:
        """Seconds until the Job may go (<= 0: now); None if it has no TTL or is not finished."""
        ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
        at = finish_time(job)
        if ttl is None or at is None or not finished(job):
            return None
        return ttl - (self.now() - at).total_seconds()

    async def sync(self, key: str) -> None:
        ns, name = split_key(key)
        job = self.jobs.get(ns, name)
        if job is None or job["metadata"].get("deletionTimestamp"):
            return
        left = self.expires_in(job)
        if left is None:
            return
        if left > 0:
            self.enqueue(key, left)
            return
        try:  # a fresh read: the TTL may have changed since the informer saw it
            fresh = await self.client.get("jobs", name, ns)
        except ApiError as e:
            if e.status == 404:
                return
            raise
        left = self.expires_in(fresh)
        if left is None or fresh["metadata"]["uid"] != job["metadata"]["uid"]:
            return
        if left > 0:
            self.enqueue(key, left)
            return
        await self.client.request("DELETE", f"/apis/batch/v1/namespaces/{ns}/jobs/{name}",
                                  {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Foreground",
                                   "preconditions": {"uid": fresh["metadata"]["uid"]}})
