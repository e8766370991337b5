"""Jobs, CronJobs, ReplicationControllers, PodDisruptionBudgets with pods/eviction, and the
ServiceAccount and root CA publishers, against the real API server and controller manager. No
kubelet here: a stand-in runs pods to the end their command names (`exit N`, or `sleep` to stay
running), as a kubelet reports them through the status subresource."""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import re
import threading
import time

import pytest

from netlab.control import cron
from netlab.control.controllers import cronjob as cj_logic
from netlab.control.controllers import job as job_logic
from netlab.kit import clock
from tests.apikit import ControlPlane
from tests.test_controllers import add_nodes, wait


class JobKubelet:
    """Runs bound pods: Running (and Ready) first, then, a little later, Succeeded or Failed with
    the exit code of `exit N` in the command (0 without one); `sleep` keeps a pod running. Deleted
    pods are stopped and removed with grace 0."""

    def __init__(self, cp: ControlPlane, run_for: float = 0.4):
        from kubernetes import client, config

        self.api = client.CoreV1Api(config.new_client_from_config(str(cp.kubeconfig)))
        self.run_for = run_for
        self.hold = False  # leave deleted pods terminating (to look at them) until cleared
        self.started: dict[str, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(5)

    def loop(self):
        from kubernetes.client import ApiException
        from urllib3.exceptions import HTTPError

        while not self.stop.is_set():
            try:
                for p in self.api.list_pod_for_all_namespaces().items:
                    self.step(p)
            except (ApiException, HTTPError, OSError, ValueError):
                pass
            self.stop.wait(0.1)

    def step(self, p) -> None:
        name, ns, uid = p.metadata.name, p.metadata.namespace, p.metadata.uid
        if not p.spec.node_name:
            return
        if p.metadata.deletion_timestamp:
            if not self.hold:
                self.api.delete_namespaced_pod(name, ns, grace_period_seconds=0)
            return
        if p.status.phase in ("Succeeded", "Failed"):
            return
        now = clock.now()
        c = p.spec.containers[0]
        cmd = " ".join((c.command or []) + (c.args or []))
        if uid not in self.started:
            self.started[uid] = time.monotonic()
            self.api.patch_namespaced_pod_status(name, ns, {"status": {
                "phase": "Running", "podIP": "10.244.9.9", "startTime": now,
                "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}],
                "containerStatuses": [{"name": c.name, "image": c.image, "imageID": c.image, "ready": True,
                                       "restartCount": 0, "started": True, "state": {"running": {"startedAt": now}}}]}})
            return
        run_for = float((p.metadata.annotations or {}).get("nlt/run-for", self.run_for))
        if "sleep" in cmd or time.monotonic() - self.started[uid] < run_for:
            return
        m = re.search(r"exit (\d+)", cmd)
        code = int(m.group(1)) if m else 0
        self.api.patch_namespaced_pod_status(name, ns, {"status": {
            "phase": "Succeeded" if code == 0 else "Failed",
            "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": now}],
            "containerStatuses": [{"name": c.name, "image": c.image, "imageID": c.image, "ready": False,
                                   "restartCount": 0, "started": False, "state": {"terminated": {
                                       "exitCode": code, "reason": "Completed" if code == 0 else "Error",
                                       "startedAt": now, "finishedAt": now}}}]}})


@pytest.fixture(scope="module")
def cp():
    with ControlPlane("nltbatch", components=("controllers", "scheduler")) as plane:
        add_nodes(plane, ("control-plane", "worker", "worker2"))
        with JobKubelet(plane) as kubelet:
            plane.kubelet = kubelet
            yield plane


def job(name: str, cmd: str, restart: str = "Never", run_for: float | None = None, **spec) -> str:
    meta = {"annotations": {"nlt/run-for": str(run_for)}} if run_for else {}
    return json.dumps({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
                       "spec": {**spec, "template": {"metadata": meta, "spec": {"restartPolicy": restart, "containers": [
                           {"name": "c", "image": "busybox", "command": ["sh", "-c", cmd]}]}}}})


def get(cp: ControlPlane, kind: str, name: str, ns: str = "default") -> dict:
    return json.loads(cp.kubectl("get", kind, name, "-n", ns, "-o", "json").stdout)


def pods_of(cp: ControlPlane, job_name: str) -> list[dict]:
    return json.loads(cp.kubectl("get", "pods", "-l", f"batch.kubernetes.io/job-name={job_name}", "-o",
                                 "json").stdout)["items"]


def events(cp: ControlPlane, name: str) -> list[dict]:
    return json.loads(cp.kubectl("get", "events", "--field-selector", f"involvedObject.name={name}", "-o",
                                 "json").stdout)["items"]


def _when(fetch, pred):
    """What `fetch` gives once `pred` holds for it, else None (a wait's predicate)."""
    x = fetch()
    return x if pred(x) else None


def conds(obj: dict) -> dict[str, dict]:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


# --- Jobs ------------------------------------------------------------------------------------

def test_job_defaults_labels_and_validation(cp):
    cp.kubectl("create", "-f", "-", input=job("pi", "sleep 1000", suspend=True))
    j = get(cp, "job", "pi")
    uid, spec = j["metadata"]["uid"], j["spec"]
    assert {k: spec[k] for k in ("completions", "parallelism", "backoffLimit", "completionMode", "suspend",
                                 "manualSelector", "podReplacementPolicy")} == {
        "completions": 1, "parallelism": 1, "backoffLimit": 6, "completionMode": "NonIndexed", "suspend": True,
        "manualSelector": False, "podReplacementPolicy": "TerminatingOrFailed"}
    want = {"batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": "pi", "controller-uid": uid,
            "job-name": "pi"}
    assert spec["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    assert spec["template"]["metadata"]["labels"] == want and j["metadata"]["labels"] == want
    # suspended: no pods, the Suspended condition, no start time
    j = wait(lambda: _when(lambda: get(cp, "job", "pi"), lambda x: "Suspended" in conds(x)), what="Suspended")
    assert conds(j)["Suspended"]["reason"] == "JobSuspended" and "startTime" not in j["status"]
    assert pods_of(cp, "pi") == []
    assert cp.kubectl("get", "job", "pi", "--no-headers").stdout.split()[:3] == ["pi", "Suspended", "0/1"]
    # what an update may not change, and the restart policy a Job's pods need
    err = cp.kubectl("patch", "job", "pi", "--type=merge", "-p", '{"spec":{"completions":2}}', check=False).stderr
    assert "spec.completions: Invalid value: 2: field is immutable" in err
    err = cp.kubectl("create", "-f", "-", input=job("always", "true", restart="Always"), check=False).stderr
    assert 'The Job "always" is invalid: spec.template.spec.restartPolicy: Required value: valid values: ' \
           '"OnFailure", "Never"' in err
    err = cp.kubectl("create", "-f", "-", input=job("pfp", "true", restart="OnFailure", podFailurePolicy={
        "rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [1]}}]}), check=False).stderr
    assert 'spec.template.spec.restartPolicy: Invalid value: "OnFailure": only "Never" is supported when ' \
           "podFailurePolicy is specified" in err
    err = cp.kubectl("create", "-f", "-", input=job("idx", "true", completionMode="Indexed", parallelism=2), check=False).stderr
    assert "spec.completions: Required value: when completion mode is Indexed" in err
    cp.kubectl("delete", "job", "pi")


def test_job_delete_without_policy_orphans_its_pods(cp):
    """batch/v1's default, kept for compatibility: the pods stay, without owner and finalizer."""
    cp.kubectl("create", "-f", "-", input=job("keep", "sleep 1000"))
    pod = wait(lambda: (ps := pods_of(cp, "keep")) and ps[0], what="the pod")["metadata"]["name"]
    assert cp.raw("DELETE", "/apis/batch/v1/namespaces/default/jobs/keep")[0] == 200
    p = wait(lambda: _when(lambda: get(cp, "pod", pod), lambda x: not x["metadata"].get("ownerReferences")
                           and not x["metadata"].get("finalizers")), what="the orphaned pod")
    assert p["status"]["phase"] == "Running"
    cp.kubectl("delete", "pod", pod)


def test_job_completions_with_parallelism(cp):
    cp.kubectl("create", "-f", "-", input=job("para", "echo done", run_for=2, completions=3, parallelism=2))
    most = [0]

    def done():
        j = get(cp, "job", "para")
        most[0] = max(most[0], j["status"].get("active", 0))
        return j if "Complete" in conds(j) else None
    j = wait(done, timeout=40, what="the Job to complete")
    st = j["status"]
    assert st["succeeded"] == 3 and "failed" not in st and st["uncountedTerminatedPods"] == {} and st["ready"] == 0
    assert conds(j)["SuccessCriteriaMet"]["reason"] == "CompletionsReached"
    assert conds(j)["Complete"]["message"] == "Reached expected number of succeeded pods"
    assert st["completionTime"] >= st["startTime"]
    assert most[0] == 2, f"as many pods running as parallelism, never more: {most[0]}"
    pods = pods_of(cp, "para")
    assert len(pods) == 3
    for p in pods:
        assert p["metadata"]["name"].startswith("para-") and "finalizers" not in p["metadata"]
        ref = p["metadata"]["ownerReferences"][0]
        assert (ref["kind"], ref["name"], ref["controller"]) == ("Job", "para", True)
        assert p["metadata"]["labels"]["controller-uid"] == j["metadata"]["uid"]
    wide = cp.kubectl("get", "jobs", "para", "-o", "wide").stdout.splitlines()
    assert wide[0].split() == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]
    assert wide[1].split()[:3] == ["para", "Complete", "3/3"] and "busybox" in wide[1]
    reasons = [e["reason"] for e in events(cp, "para")]
    assert reasons.count("SuccessfulCreate") == 3 and "Completed" in reasons
    cp.kubectl("delete", "job", "para")
    wait(lambda: not pods_of(cp, "para"), what="the Job's pods to go with it")


def test_failed_pods_retried_after_backoff_until_backoff_limit(cp):
    cp.kubectl("create", "-f", "-", input=job("fail", "exit 1", backoffLimit=1))
    j = wait(lambda: _when(lambda: get(cp, "job", "fail"), lambda x: "Failed" in conds(x)), timeout=40,
             what="the Job to fail")
    c = conds(j)
    assert c["Failed"]["reason"] == "BackoffLimitExceeded" and c["Failed"]["message"] == \
        "Job has reached the specified backoff limit"
    assert c["FailureTarget"]["reason"] == "BackoffLimitExceeded"
    assert j["status"]["failed"] == 2 and "completionTime" not in j["status"]
    pods = sorted(pods_of(cp, "fail"), key=lambda p: p["metadata"]["creationTimestamp"])
    assert len(pods) == 2 and all(p["status"]["phase"] == "Failed" for p in pods)
    first_end = clock.parse(pods[0]["status"]["containerStatuses"][0]["state"]["terminated"]["finishedAt"])
    gap = (clock.parse(pods[1]["metadata"]["creationTimestamp"]) - first_end).total_seconds()
    assert gap >= 9, f"the retry waited {gap}s, not upstream's 10 s back-off"
    assert cp.kubectl("get", "job", "fail", "--no-headers").stdout.split()[:3] == ["fail", "Failed", "0/1"]
    assert "BackoffLimitExceeded" in [e["reason"] for e in events(cp, "fail")]


def test_backoff_doubles_from_ten_seconds_to_six_minutes():
    t0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    later = t0 + datetime.timedelta(seconds=3)
    assert [job_logic.backoff_remaining(n, t0, t0) for n in (0, 1, 2, 3, 6, 7, 20)] == [0, 10, 20, 40, 320, 360, 360]
    assert job_logic.backoff_remaining(2, t0, later) == 17
    assert job_logic.backoff_remaining(1, t0, t0 + datetime.timedelta(seconds=11)) == 0


def test_indexed_job_and_pod_failure_policy(cp):
    cp.kubectl("create", "-f", "-", input=job("idx", "echo ok", completions=3, parallelism=3,
                                              completionMode="Indexed"))
    j = wait(lambda: _when(lambda: get(cp, "job", "idx"), lambda x: "Complete" in conds(x)), timeout=40,
             what="the Indexed Job to complete")
    assert j["status"]["completedIndexes"] == "0-2" and j["status"]["succeeded"] == 3
    by_index = {p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]: p for p in pods_of(cp, "idx")}
    assert sorted(by_index) == ["0", "1", "2"]
    for ix, p in by_index.items():
        assert p["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"] == ix
        assert p["spec"]["hostname"] == f"idx-{ix}" and p["metadata"]["name"].startswith(f"idx-{ix}-")
        env = {e["name"]: e for e in p["spec"]["containers"][0]["env"]}
        assert env["JOB_COMPLETION_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == \
            "metadata.labels['batch.kubernetes.io/job-completion-index']"
    # FailJob on exit code 42: no retry, the rule named in the condition
    rules = {"rules": [{"action": "Ignore", "onExitCodes": {"operator": "In", "values": [7]}},
                       {"action": "FailJob", "onExitCodes": {"containerName": "c", "operator": "In", "values": [42]}}]}
    cp.kubectl("create", "-f", "-", input=job("pfp", "exit 42", podFailurePolicy=rules))
    j = wait(lambda: _when(lambda: get(cp, "job", "pfp"), lambda x: "Failed" in conds(x)), timeout=30,
             what="FailJob")
    pod = pods_of(cp, "pfp")[0]["metadata"]["name"]
    assert conds(j)["Failed"]["reason"] == "PodFailurePolicy"
    assert conds(j)["Failed"]["message"] == \
        f"Container c for pod default/{pod} failed with exit code 42 matching FailJob rule at index 1"
    assert j["spec"]["podReplacementPolicy"] == "Failed" and len(pods_of(cp, "pfp")) == 1
    # Ignore: the failure does not count against backoffLimit 0
    cp.kubectl("create", "-f", "-", input=job("ign", "exit 7", backoffLimit=0, podFailurePolicy=rules))
    wait(lambda: len(pods_of(cp, "ign")) >= 2, timeout=30, what="the ignored failure to be replaced")
    j = get(cp, "job", "ign")
    assert "Failed" not in conds(j) and j["status"].get("failed", 0) == 0
    cp.kubectl("delete", "job", "idx", "pfp", "ign")


def test_deadline_ttl_and_resume(cp):
    cp.kubectl("create", "-f", "-", input=job("late", "sleep 100", activeDeadlineSeconds=2))
    j = wait(lambda: _when(lambda: get(cp, "job", "late"), lambda x: "Failed" in conds(x)), timeout=30,
             what="the deadline")
    assert conds(j)["Failed"]["reason"] == "DeadlineExceeded" and conds(j)["Failed"]["message"] == \
        "Job was active longer than specified deadline"
    wait(lambda: not pods_of(cp, "late"), what="the running pod to be deleted")
    cp.kubectl("create", "-f", "-", input=job("short", "echo hi", ttlSecondsAfterFinished=1))
    wait(lambda: cp.kubectl("get", "job", "short", check=False).returncode == 1, timeout=30,
         what="the TTL-after-finished controller to delete the Job")
    cp.kubectl("create", "-f", "-", input=job("later", "echo hi", suspend=True))
    wait(lambda: "Suspended" in conds(get(cp, "job", "later")), what="Suspended")
    cp.kubectl("patch", "job", "later", "--type=merge", "-p", '{"spec":{"suspend":false}}')
    j = wait(lambda: _when(lambda: get(cp, "job", "later"), lambda x: "Complete" in conds(x)), timeout=30,
             what="resumed")
    assert conds(j)["Suspended"]["status"] == "False" and conds(j)["Suspended"]["reason"] == "JobResumed"
    cp.kubectl("delete", "job", "late", "later")


# --- CronJobs --------------------------------------------------------------------------------

def test_schedule_arithmetic_with_a_given_clock():
    def at(text):
        return datetime.datetime.fromisoformat(text).replace(tzinfo=datetime.timezone.utc)
    cjob = {"metadata": {"name": "hello", "namespace": "default", "creationTimestamp": "2026-01-01T10:00:30Z"},
            "spec": {"schedule": "*/5 * * * *"}, "status": {}}
    sched = cron.parse("*/5 * * * *", datetime.timezone.utc)
    assert cj_logic.most_recent_schedule_time(cjob, at("2026-01-01T10:04:00"), sched, True)[1:] == (None, "none")
    assert cj_logic.most_recent_schedule_time(cjob, at("2026-01-01T10:06:00"), sched, True)[1:] == (
        at("2026-01-01T10:05:00"), "none")
    assert cj_logic.most_recent_schedule_time(cjob, at("2026-01-01T10:31:00"), sched, True)[1:] == (
        at("2026-01-01T10:30:00"), "few")
    assert cj_logic.most_recent_schedule_time(cjob, at("2026-01-02T10:31:00"), sched, True)[2] == "many"
    assert cj_logic.next_schedule_delay(cjob, at("2026-01-01T10:06:00"), sched) == pytest.approx(240.1)
    deadline = dict(cjob, spec={"schedule": "*/5 * * * *", "startingDeadlineSeconds": 60})
    assert cj_logic.most_recent_schedule_time(deadline, at("2026-01-01T10:30:30"), sched, True)[1:] == (
        at("2026-01-01T10:30:00"), "none")  # the times before the deadline are not even looked at
    assert cj_logic.most_recent_schedule_time(deadline, at("2026-01-01T10:31:00"), sched, True)[1] is None
    assert cj_logic.job_name(cjob, at("2026-01-01T10:05:00")) == f"hello-{int(at('2026-01-01T10:05:00').timestamp()) // 60}"
    berlin = cron.parse("0 9 * * *", cron.load_zone("Europe/Berlin"))
    assert berlin.next(at("2026-07-01T00:00:00")) == at("2026-07-01T07:00:00")
    assert cron.parse_error("@hourly") is None and cron.parse_error("0 0 * *") == \
        "expected exactly 5 fields, found 4: [0 0 * *]"


def test_cronjob_controller_decisions_with_an_injected_clock():
    """The CronJob controller in this process, against a real API server (no other controller),
    its clock moved by hand: a Job per scheduled minute, Forbid and Replace, history limits, a
    missed start, suspend."""
    from netlab.api.client import Client
    from netlab.control.controllers.base import Context

    with ControlPlane("nltcjclock") as plane:
        cronjob = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "tick"}, "spec": {
            "schedule": "*/1 * * * *", "concurrencyPolicy": "Forbid", "successfulJobsHistoryLimit": 1,
            "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
                {"name": "c", "image": "busybox", "command": ["date"]}]}}}}}}
        plane.kubectl("create", "-f", "-", input=json.dumps(cronjob))
        created = clock.parse(get(plane, "cj", "tick")["metadata"]["creationTimestamp"])
        minute = created.replace(second=0) + datetime.timedelta(minutes=1)
        now = [minute + datetime.timedelta(seconds=5)]

        async def scenario():
            client = Client.from_kubeconfig(plane.kubeconfig)
            ctx = Context(client)
            c = cj_logic.CronJobController(ctx, now=lambda: now[0])
            tasks = await ctx.start()

            async def sync():
                await asyncio.sleep(0.3)  # let the informers see the last writes
                await c.sync("default/tick")
            try:
                await sync()
                first = cj_logic.job_name({"metadata": {"name": "tick"}}, minute)
                cjs = get(plane, "cj", "tick")
                assert [a["name"] for a in cjs["status"]["active"]] == [first]
                assert cjs["status"]["lastScheduleTime"] == minute.strftime(clock.SECONDS)
                j = get(plane, "job", first)
                assert j["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"] == \
                    minute.strftime(clock.SECONDS)
                assert j["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
                now[0] += datetime.timedelta(minutes=1)  # Forbid: the first still runs
                await sync()
                assert "JobAlreadyActive" in [e["reason"] for e in events(plane, "tick")]
                assert len(json.loads(plane.kubectl("get", "jobs", "-o", "json").stdout)["items"]) == 1
                patch = {"spec": {"concurrencyPolicy": "Replace"}}
                plane.kubectl("patch", "cj", "tick", "--type=merge", "-p", json.dumps(patch))
                await sync()
                second = cj_logic.job_name({"metadata": {"name": "tick"}}, minute + datetime.timedelta(minutes=1))
                assert [a["name"] for a in get(plane, "cj", "tick")["status"]["active"]] == [second]
                assert plane.kubectl("get", "job", first, check=False).returncode == 1
                for name in (second,):  # finish it, as the Job controller would
                    j = get(plane, "job", name)
                    t = clock.now()
                    j["status"] = {"startTime": t, "completionTime": t, "succeeded": 1, "conditions": [
                        {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": t},
                        {"type": "Complete", "status": "True", "lastTransitionTime": t}]}
                    await client.update("jobs", j, subresource="status")
                await sync()
                assert "active" not in get(plane, "cj", "tick")["status"]
                assert "SawCompletedJob" in [e["reason"] for e in events(plane, "tick")]
                now[0] += datetime.timedelta(minutes=1)  # a third, and the history keeps one success
                await sync()
                assert get(plane, "cj", "tick")["status"]["lastSuccessfulTime"]
                third = cj_logic.job_name({"metadata": {"name": "tick"}}, minute + datetime.timedelta(minutes=2))
                j = get(plane, "job", third)
                t = clock.now()
                j["status"] = {"startTime": t, "completionTime": t, "succeeded": 1, "conditions": [
                    {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": t},
                    {"type": "Complete", "status": "True", "lastTransitionTime": t}]}
                await client.update("jobs", j, subresource="status")
                await sync()
                await sync()
                names = [x["metadata"]["name"] for x in json.loads(plane.kubectl("get", "jobs", "-o", "json").stdout)[
                    "items"] if not x["metadata"].get("deletionTimestamp")]
                assert names == [third], names
                # too late for the starting deadline: no Job for that time
                plane.kubectl("patch", "cj", "tick", "--type=merge", "-p", '{"spec":{"startingDeadlineSeconds":10}}')
                now[0] += datetime.timedelta(minutes=1, seconds=30)
                await sync()
                assert len(json.loads(plane.kubectl("get", "jobs", "-o", "json").stdout)["items"]) == 1
                plane.kubectl("patch", "cj", "tick", "--type=merge", "-p",
                              '{"spec":{"suspend":true,"startingDeadlineSeconds":null}}')
                now[0] += datetime.timedelta(minutes=3)
                await sync()
                assert len(json.loads(plane.kubectl("get", "jobs", "-o", "json").stdout)["items"]) == 1
                row = plane.kubectl("get", "cj", "tick", "--no-headers").stdout.split()
                assert row[:6] == ["tick", "*/1", "*", "*", "*", "*"] and row[6:9] == ["<none>", "True", "0"]
            finally:
                for t in tasks:
                    t.cancel()
                await client.close()
        asyncio.run(scenario())


def test_cronjob_validation(cp):
    def cronjob(name, **spec):
        return json.dumps({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name}, "spec": {
            "schedule": "*/1 * * * *", **spec, "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "busybox"}]}}}}}})
    cp.kubectl("create", "-f", "-", input=cronjob("ok"))
    c = get(cp, "cj", "ok")
    assert {k: c["spec"][k] for k in ("concurrencyPolicy", "suspend", "successfulJobsHistoryLimit",
                                      "failedJobsHistoryLimit")} == {
        "concurrencyPolicy": "Allow", "suspend": False, "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 1}
    err = cp.kubectl("create", "-f", "-", input=cronjob("bad", schedule="* * * *"), check=False).stderr
    assert 'spec.schedule: Invalid value: "* * * *": expected exactly 5 fields, found 4: [* * * *]' in err
    err = cp.kubectl("create", "-f", "-", input=cronjob("tz", schedule="TZ=UTC * * * * *"), check=False).stderr
    assert "cannot use TZ or CRON_TZ in schedule, use timeZone field instead" in err
    err = cp.kubectl("create", "-f", "-", input=cronjob("zone", timeZone="Mars/Base"), check=False).stderr
    assert 'spec.timeZone: Invalid value: "Mars/Base": unknown time zone Mars/Base' in err
    err = cp.kubectl("create", "-f", "-", input=cronjob("x" * 53), check=False).stderr
    assert "must be no more than 52 characters" in err
    cp.kubectl("create", "-f", "-", input=cronjob("berlin", timeZone="Europe/Berlin", suspend=True))
    assert cp.kubectl("get", "cj", "berlin", "--no-headers").stdout.split()[6:9] == ["Europe/Berlin", "True", "0"]
    cp.kubectl("delete", "cj", "ok", "berlin")


# --- ReplicationControllers ------------------------------------------------------------------

def test_replication_controller(cp):
    rc = {"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "nginx"}, "spec": {
        "replicas": 3, "template": {"metadata": {"labels": {"app": "nginx"}}, "spec": {"containers": [
            {"name": "nginx", "image": "nginx", "command": ["sleep", "1000"]}]}}}}
    cp.kubectl("create", "-f", "-", input=json.dumps(rc))
    r = get(cp, "rc", "nginx")
    assert r["spec"]["selector"] == {"app": "nginx"} and r["metadata"]["labels"] == {"app": "nginx"}
    r = wait(lambda: _when(lambda: get(cp, "rc", "nginx"), lambda x: x["status"].get("readyReplicas") == 3),
             what="3 ready")
    assert r["status"]["replicas"] == 3 and r["status"]["observedGeneration"] == 1
    pods = json.loads(cp.kubectl("get", "pods", "-l", "app=nginx", "-o", "json").stdout)["items"]
    assert len(pods) == 3 and all(p["metadata"]["ownerReferences"][0]["kind"] == "ReplicationController" for p in pods)
    cp.kubectl("scale", "rc", "nginx", "--replicas=1")
    wait(lambda: get(cp, "rc", "nginx")["status"]["replicas"] == 1, what="scaled down")
    scale = json.loads(cp.raw("GET", "/api/v1/namespaces/default/replicationcontrollers/nginx/scale")[1])
    assert scale["spec"]["replicas"] == 1 and scale["status"]["selector"] == "app=nginx"
    wide = cp.kubectl("get", "rc", "-o", "wide").stdout.splitlines()
    assert wide[0].split() == ["NAME", "DESIRED", "CURRENT", "READY", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]
    assert wide[1].split()[:4] == ["nginx", "1", "1", "1"] and wide[1].split()[-1] == "app=nginx"
    err = cp.kubectl("create", "-f", "-", input=json.dumps(dict(rc, metadata={"name": "bad"}, spec=dict(
        rc["spec"], selector={"app": "other"}))), check=False).stderr
    assert "spec.template.metadata.labels: Invalid value" in err and "`selector` does not match template `labels`" in err
    cp.kubectl("delete", "rc", "nginx")
    wait(lambda: not json.loads(cp.kubectl("get", "pods", "-l", "app=nginx", "-o", "json").stdout)["items"],
         what="the pods to go with it")


# --- PodDisruptionBudgets and evictions ------------------------------------------------------

def evict(cp: ControlPlane, pod: str, ns: str = "default") -> tuple[int, dict]:
    body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod, "namespace": ns}}
    return cp.api("POST", f"/api/v1/namespaces/{ns}/pods/{pod}/eviction", body)


def test_disruption_budget_status_and_evictions(cp):
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "zk"}, "spec": {
        "replicas": 2, "selector": {"matchLabels": {"app": "zk"}}, "template": {"metadata": {"labels": {"app": "zk"}},
                                                                                  "spec": {"containers": [
                                                                                      {"name": "zk", "image": "busybox",
                                                                                       "command": ["sleep", "1000"]}]}}}}
    cp.kubectl("create", "-f", "-", input=json.dumps(dep))
    pdb = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "zk-pdb"},
           "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "zk"}}}}
    cp.kubectl("create", "-f", "-", input=json.dumps(pdb))

    def budget(allowed: int, healthy: int = 2):
        b = get(cp, "pdb", "zk-pdb")
        st = b["status"]
        return b if st.get("currentHealthy") == healthy and st["disruptionsAllowed"] == allowed and \
            st.get("observedGeneration") == b["metadata"]["generation"] else None
    b = wait(lambda: budget(0), timeout=20, what="the budget's status")
    st = b["status"]
    assert (st["desiredHealthy"], st["expectedPods"]) == (2, 2)
    cond = conds(b)["DisruptionAllowed"]
    assert (cond["status"], cond["reason"], cond["message"]) == ("False", "InsufficientPods", "")
    assert cp.kubectl("get", "pdb", "--no-headers").stdout.split()[:4] == ["zk-pdb", "2", "N/A", "0"]
    pods = [p["metadata"]["name"] for p in json.loads(cp.kubectl("get", "pods", "-l", "app=zk", "-o",
                                                                 "json").stdout)["items"]]
    code, body = evict(cp, pods[0])
    assert code == 429 and body["reason"] == "TooManyRequests"
    assert body["message"] == "Cannot evict pod as it would violate the pod's disruption budget."
    assert body["details"]["causes"] == [{"reason": "DisruptionBudget",
                                          "message": "The disruption budget zk-pdb needs 2 healthy pods and has 2 "
                                                     "currently"}]
    # one may go: the eviction takes the disruption and the pod goes, marked DisruptionTarget
    cp.kubectl("patch", "pdb", "zk-pdb", "--type=merge", "-p", '{"spec":{"minAvailable":null,"maxUnavailable":"50%"}}')
    b = wait(lambda: budget(1), timeout=20, what="one disruption allowed")
    assert (b["status"]["desiredHealthy"], b["status"]["expectedPods"]) == (1, 2)
    assert conds(b)["DisruptionAllowed"]["reason"] == "SufficientPods"
    cp.kubelet.hold = True
    first, second = evict(cp, pods[0]), evict(cp, pods[1])
    assert first == (201, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})
    assert second[0] == 429, "the budget allows no second disruption until the replacement is ready"
    p = get(cp, "pod", pods[0])
    assert p["metadata"].get("deletionTimestamp") and {"type": "DisruptionTarget", "status": "True",
                                                        "reason": "EvictionByEvictionAPI",
                                                        "message": "Eviction API: evicting"}.items() <= \
        conds(p)["DisruptionTarget"].items()
    cp.kubelet.hold = False
    wait(lambda: cp.kubectl("get", "pod", pods[0], check=False).returncode == 1, what="the evicted pod to go")
    wait(lambda: budget(1), timeout=20, what="the replacement to be counted")
    code, body = evict(cp, "nosuch")
    assert code == 404
    status, body = cp.api("POST", f"/api/v1/namespaces/default/pods/{pods[1]}/eviction",
                          {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "other"}})
    assert status == 400 and body["message"] == "name in URL does not match name in Eviction object"
    # two budgets over one pod: the eviction cannot choose
    cp.kubectl("create", "-f", "-", input=json.dumps(dict(pdb, metadata={"name": "second"})))
    code, body = evict(cp, pods[1])
    assert code == 500 and body["message"] == \
        "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
    disc = json.loads(cp.raw("GET", "/api/v1")[1])
    assert {"name": "pods/eviction", "singularName": "", "namespaced": True, "group": "policy", "version": "v1",
            "kind": "Eviction", "verbs": ["create"]} in disc["resources"]
    cp.kubectl("delete", "pdb", "zk-pdb", "second")
    cp.kubectl("delete", "deploy", "zk")


# --- the ServiceAccount and root CA publishers -----------------------------------------------

def test_new_namespace_gets_default_service_account_and_root_ca(cp):
    cp.kubectl("create", "namespace", "nlt-team")
    wait(lambda: cp.kubectl("get", "sa", "default", "-n", "nlt-team", check=False).returncode == 0, what="default SA")
    cm = wait(lambda: (r := cp.kubectl("get", "cm", "kube-root-ca.crt", "-n", "nlt-team", "-o", "json",
                                       check=False)).returncode == 0 and json.loads(r.stdout), what="kube-root-ca.crt")
    ca = (cp.cluster.state_dir / "pki" / "ca.crt").read_text()
    assert cm["data"] == {"ca.crt": ca}
    assert cm["metadata"]["annotations"]["kubernetes.io/description"].startswith("Contains a CA bundle")
    kubeconfig_ca = base64.b64decode(__import__("yaml").safe_load(cp.kubeconfig.read_text())["clusters"][0][
        "cluster"]["certificate-authority-data"]).decode()
    assert kubeconfig_ca == ca
    uid = get(cp, "sa", "default", "nlt-team")["metadata"]["uid"]
    cp.kubectl("delete", "sa", "default", "-n", "nlt-team")
    cp.kubectl("delete", "cm", "kube-root-ca.crt", "-n", "nlt-team")
    wait(lambda: (r := cp.kubectl("get", "sa", "default", "-n", "nlt-team", "-o", "json", check=False)).returncode == 0
         and json.loads(r.stdout)["metadata"]["uid"] != uid, what="the SA made again")
    wait(lambda: cp.kubectl("get", "cm", "kube-root-ca.crt", "-n", "nlt-team", check=False).returncode == 0,
         what="the ConfigMap made again")
    cp.kubectl("patch", "cm", "kube-root-ca.crt", "-n", "nlt-team", "--type=merge", "-p", '{"data":{"ca.crt":"x"}}')
    wait(lambda: get(cp, "cm", "kube-root-ca.crt", "nlt-team")["data"] == {"ca.crt": ca}, what="the CA put back")
    for ns in ("default", "kube-system", "kube-public"):
        assert cp.kubectl("get", "sa", "default", "-n", ns, check=False).returncode == 0
    cp.kubectl("delete", "namespace", "nlt-team", timeout=60)


def test_success_policy_rules():
    match = job_logic.match_success_policy
    rules = {"rules": [{"succeededIndexes": "0,2-3"}, {"succeededIndexes": "4-9", "succeededCount": 2},
                       {"succeededCount": 5}]}
    assert match(rules, 10, {0, 2}) is None
    assert match(rules, 10, {0, 2, 3}) == "Matched rules at index 0"
    assert match(rules, 10, {4, 9}) == "Matched rules at index 1"
    assert match(rules, 10, {0, 1, 2, 5, 6}) == "Matched rules at index 1"
    assert match(rules, 10, {0, 1, 2, 6, 7}) == "Matched rules at index 1"
    assert match({"rules": [{"succeededCount": 5}]}, 10, {0, 1, 2, 3, 7}) == "Matched rules at index 0"
    assert match(None, 10, {0}) is None and match(rules, 10, set()) is None


def test_indexed_job_ends_when_its_success_policy_is_met(cp):
    policy = {"rules": [{"succeededIndexes": "0-5", "succeededCount": 1}]}
    cp.kubectl("create", "-f", "-", input=job("sp", "echo ok", completions=6, parallelism=2,
                                              completionMode="Indexed", successPolicy=policy))
    j = wait(lambda: _when(lambda: get(cp, "job", "sp"), lambda x: "Complete" in conds(x)), timeout=40,
             what="the success policy to complete the Job")
    for kind in ("SuccessCriteriaMet", "Complete"):
        assert (conds(j)[kind]["reason"], conds(j)[kind]["message"]) == ("SuccessPolicy", "Matched rules at index 0")
    assert 1 <= j["status"]["succeeded"] < 6 and len(pods_of(cp, "sp")) < 6  # not every index was run
    cp.kubectl("delete", "job", "sp")
