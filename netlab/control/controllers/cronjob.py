"""The CronJob controller, as upstream's v2 (pkg/controller/cronjob): at each time the schedule
names (in the CronJob's time zone) it makes a Job from the jobTemplate, named
`<cronjob>-<scheduled time in minutes since the epoch>` so that no time makes two; it honours
startingDeadlineSeconds, concurrencyPolicy (Allow, Forbid, Replace) and suspend, keeps
status.active, lastScheduleTime and lastSuccessfulTime, deletes finished Jobs beyond the history
limits, and sleeps until the next scheduled time."""

from __future__ import annotations

import copy
import datetime
from collections.abc import Callable

from netlab.api.client import ApiError
from netlab.control import cron
from netlab.control.controllers.base import Controller, controller_of, owner_ref, split_key
from netlab.kit import clock

SCHEDULED_ANNOTATION = "batch.kubernetes.io/cronjob-scheduled-timestamp"
NEXT_SCHEDULE_DELTA = 0.1  # seconds after the scheduled time, as upstream's nextScheduleDelta
NONE_MISSED, FEW_MISSED, MANY_MISSED = "none", "few", "many"


# --- the schedule arithmetic (pure, with the time given) -------------------------------------

def schedule_of(cj: dict) -> cron.Schedule:
    """formatSchedule + ParseStandard: a TZ= in the schedule wins, then spec.timeZone, then the
    controller manager's own zone."""
    spec = cj.get("spec") or {}
    text = spec.get("schedule") or ""
    if "TZ" in text:
        return cron.parse(text)
    tz = spec.get("timeZone")
    if tz is not None:
        try:
            return cron.parse(text, cron.load_zone(tz))
        except cron.ScheduleError:
            pass
    return cron.parse(text)


def most_recent_schedule_time(cj: dict, now: datetime.datetime, sched: cron.Schedule,
                              include_deadline: bool) -> tuple[datetime.datetime, datetime.datetime | None, str]:
    """(earliest time considered, the latest scheduled time not after now or None, how many were
    missed), as upstream estimates it from the first two times after the earliest."""
    meta, spec, st = cj["metadata"], cj.get("spec") or {}, cj.get("status") or {}
    earliest = clock.parse(st["lastScheduleTime"]) if st.get("lastScheduleTime") else clock.parse(
        meta["creationTimestamp"])
    if include_deadline and spec.get("startingDeadlineSeconds") is not None:
        deadline = now - datetime.timedelta(seconds=spec["startingDeadlineSeconds"])
        earliest = max(earliest, deadline)
    t1 = sched.next(earliest)
    t2 = sched.next(t1)
    if now < t1:
        return earliest, None, NONE_MISSED
    if now < t2:
        return earliest, t1, NONE_MISSED
    between = round((t2 - t1).total_seconds())
    if between < 1:
        raise cron.ScheduleError("time difference between two schedules is less than 1 second")
    missed = int((now - t1).total_seconds()) // between + 1
    recent = datetime.datetime.fromtimestamp(int(t1.timestamp()) + (missed - 1) * between, t1.tzinfo)
    return earliest, recent, MANY_MISSED if missed > 100 else FEW_MISSED


def next_schedule_delay(cj: dict, now: datetime.datetime, sched: cron.Schedule) -> float:
    """Seconds until the time after the most recent scheduled one (plus a little)."""
    try:
        earliest, recent, missed = most_recent_schedule_time(cj, now, sched, False)
        if recent is None:
            recent = earliest if missed == NONE_MISSED else now
    except cron.ScheduleError:
        recent = now
    return (sched.next(recent) - now).total_seconds() + NEXT_SCHEDULE_DELTA


def job_name(cj: dict, scheduled: datetime.datetime) -> str:
    return f"{cj['metadata']['name']}-{int(scheduled.timestamp()) // 60}"


def job_from_template(cj: dict, scheduled: datetime.datetime) -> dict:
    tmpl = (cj.get("spec") or {}).get("jobTemplate") or {}
    meta = tmpl.get("metadata") or {}
    tz = (cj.get("spec") or {}).get("timeZone")
    try:
        zone = cron.load_zone(tz or "")
    except cron.ScheduleError:
        zone = datetime.timezone.utc
    local = scheduled.astimezone(zone)
    stamp = local.strftime("%Y-%m-%dT%H:%M:%S") + ("Z" if local.utcoffset() == datetime.timedelta(0)
                                                   else local.strftime("%z")[:3] + ":" + local.strftime("%z")[3:])
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": job_name(cj, scheduled), "namespace": cj["metadata"]["namespace"],
                         "labels": dict(meta.get("labels") or {}),
                         "annotations": {**(meta.get("annotations") or {}), SCHEDULED_ANNOTATION: stamp},
                         "ownerReferences": [owner_ref(cj)]},
            "spec": copy.deepcopy(tmpl.get("spec") or {})}


def finished_type(job: dict) -> str | None:
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") in ("Complete", "Failed") and c.get("status") == "True":
            return c["type"]
    return None


def job_reference(job: dict) -> dict:
    m = job["metadata"]
    return {"kind": "Job", "namespace": m["namespace"], "name": m["name"], "uid": m["uid"], "apiVersion": "batch/v1",
            "resourceVersion": m.get("resourceVersion", "")}


def by_start_time(job: dict) -> tuple:
    start = (job.get("status") or {}).get("startTime")
    return (start is None, start or "", job["metadata"]["name"])


class CronJobController(Controller):
    name = "cronjob-controller"

    def __init__(self, ctx, now: Callable[[], datetime.datetime] = clock.utcnow):
        super().__init__(ctx)
        self.now = now
        self.cronjobs = ctx.informer("cronjobs")
        self.jobs = ctx.informer("jobs")
        self.jobs.add_index("cronjob", lambda j: [f"{j['metadata']['namespace']}/{r['name']}"
                                                  for r in [controller_of(j)] if r and r.get("kind") == "CronJob"])
        self.cronjobs.add_handler(self.enqueue_obj, self._cronjob_updated, None)
        self.jobs.add_handler(self._job_changed, lambda old, new: self._job_changed(new), self._job_changed)

    def _cronjob_updated(self, old: dict, new: dict) -> None:
        o, n = old.get("spec") or {}, new.get("spec") or {}
        if o.get("schedule") != n.get("schedule") or o.get("timeZone") != n.get("timeZone"):
            try:
                sched = schedule_of(new)
            except cron.ScheduleError:
                return  # an unparseable schedule waits for the next change of the spec
            self.enqueue(_key(new), max(next_schedule_delay(new, self.now(), sched), 0.0))
            return
        self.enqueue_obj(new)

    def _job_changed(self, job: dict) -> None:
        ref = controller_of(job)
        if ref and ref.get("kind") == "CronJob":
            cj = self.cronjobs.get(job["metadata"]["namespace"], ref["name"])
            if cj is not None and cj["metadata"]["uid"] == ref.get("uid"):
                self.enqueue_obj(cj)

    async def sync(self, key: str) -> None:
        ns, name = split_key(key)
        shared = self.cronjobs.get(ns, name)
        if shared is None:
            return
        jobs = self.jobs.by_index("cronjob", key)
        cj = copy.deepcopy(shared)
        cj.setdefault("status", {})
        updated = await self._cleanup_finished(cj, jobs)
        requeue, changed = await self._sync(cj, jobs)
        if updated or changed:
            st = cj["status"]
            if not st.get("active"):
                st.pop("active", None)
            await self.client.update("cronjobs", cj, subresource="status")
        if requeue is not None:
            self.enqueue(key, max(requeue, 0.0))

    async def _sync(self, cj: dict, jobs: list[dict]) -> tuple[float | None, bool]:
        """syncCronJob: the active list reconciled with the Jobs, then the Job for the most recent
        unmet scheduled time; returns (seconds until the next look, whether the status changed)."""
        now = self.now()
        st = cj["status"]
        changed = False
        children = {j["metadata"]["uid"] for j in jobs}
        for j in jobs:
            active = any(a.get("uid") == j["metadata"]["uid"] for a in st.get("active") or [])
            done = finished_type(j)
            if not active and done is None:
                fresh = await self.client.get("cronjobs", cj["metadata"]["name"], cj["metadata"]["namespace"])
                if any(a.get("uid") == j["metadata"]["uid"] for a in (fresh.get("status") or {}).get("active") or []):
                    cj.clear()
                    cj.update(fresh)
                    cj.setdefault("status", {})
                    st = cj["status"]
                    continue
                await self.event(cj, "UnexpectedJob", "Saw a job that the controller did not create or forgot: "
                                 f"{j['metadata']['name']}", "Warning")
            elif active and done is not None:
                st["active"] = [a for a in st.get("active") or [] if a.get("uid") != j["metadata"]["uid"]]
                await self.event(cj, "SawCompletedJob", f"Saw completed job: {j['metadata']['name']}, status: {done}")
                changed = True
            elif done == "Complete":
                completed = (j.get("status") or {}).get("completionTime")
                if completed and (not st.get("lastSuccessfulTime") or clock.parse(completed) > clock.parse(
                        st["lastSuccessfulTime"])):
                    st["lastSuccessfulTime"] = completed
                    changed = True
        for a in list(st.get("active") or []):
            if a.get("uid") in children:
                continue
            try:
                await self.client.get("jobs", a["name"], a.get("namespace"))
            except ApiError as e:
                if e.status != 404:
                    raise
                await self.event(cj, "MissingJob", f"Active job went missing: {a['name']}")
                st["active"] = [x for x in st.get("active") or [] if x.get("uid") != a.get("uid")]
                changed = True
        spec = cj.get("spec") or {}
        if cj["metadata"].get("deletionTimestamp"):
            return None, changed
        if spec.get("timeZone") is not None:
            try:
                cron.load_zone(spec["timeZone"])
            except cron.ScheduleError as e:
                await self.event(cj, "UnknownTimeZone", f'invalid timeZone: "{spec["timeZone"]}": {e}', "Warning")
                return None, changed
        if spec.get("suspend") is True:
            return None, changed
        if "TZ" in (spec.get("schedule") or ""):
            await self.event(cj, "UnsupportedSchedule", f'CRON_TZ or TZ used in schedule "{spec["schedule"]}" is not '
                             "officially supported, see https://kubernetes.io/docs/concepts/workloads/controllers/"
                             "cron-jobs/ for more details", "Warning")
        try:
            sched = schedule_of(cj)
        except cron.ScheduleError as e:
            await self.event(cj, "UnparseableSchedule", f'unparseable schedule: "{spec.get("schedule")}" : {e}',
                             "Warning")
            return None, changed
        try:
            _, scheduled, missed = most_recent_schedule_time(cj, now, sched, True)
        except cron.ScheduleError as e:
            await self.event(cj, "InvalidSchedule", f"invalid schedule: {spec.get('schedule')} : {e}", "Warning")
            return None, changed
        if scheduled is not None and missed == MANY_MISSED:
            await self.event(cj, "TooManyMissedTimes", "too many missed start times. Set or decrease "
                             ".spec.startingDeadlineSeconds or check clock skew", "Warning")
        if scheduled is None or scheduled > now:
            return next_schedule_delay(cj, now, sched), changed
        deadline = spec.get("startingDeadlineSeconds")
        if deadline is not None and scheduled + datetime.timedelta(seconds=deadline) < now:
            await self.event(cj, "MissSchedule", "Missed scheduled time to start a job: "
                             f"{scheduled.astimezone(datetime.timezone.utc).strftime('%a, %d %b %Y %H:%M:%S +0000')}",
                             "Warning")
            return next_schedule_delay(cj, now, sched), changed
        name = job_name(cj, scheduled)
        last = st.get("lastScheduleTime")
        if any(a.get("name") == name for a in st.get("active") or []) or (
                last and clock.parse(last) == scheduled.astimezone(datetime.timezone.utc)):
            return next_schedule_delay(cj, now, sched), changed
        if spec.get("concurrencyPolicy") == "Forbid" and st.get("active"):
            await self.event(cj, "JobAlreadyActive", "Not starting job because prior execution is running and "
                             "concurrency policy is Forbid")
            return next_schedule_delay(cj, now, sched), changed
        if spec.get("concurrencyPolicy") == "Replace":
            for a in list(st.get("active") or []):
                try:
                    job = await self.client.get("jobs", a["name"], a.get("namespace"))
                except ApiError as e:
                    await self.event(cj, "FailedGet", f"Get job: {e.message}", "Warning")
                    raise
                await self._delete_job(cj, job)
                changed = True
        req = job_from_template(cj, scheduled)
        try:
            created = await self.client.create("jobs", req)
            await self.event(cj, "SuccessfulCreate", f"Created job {created['metadata']['name']}")
        except ApiError as e:
            if e.status == 403 and "being terminated" in e.message:
                return None, changed
            if e.status != 409:
                await self.event(cj, "FailedCreate", f"Error creating job: {e.message}", "Warning")
                raise
            created = await self.client.get("jobs", req["metadata"]["name"], req["metadata"]["namespace"])
            ref = controller_of(created)
            if not ref or ref.get("uid") != cj["metadata"]["uid"]:
                return None, changed  # someone else's Job: they keep the status
            if any(a.get("uid") == created["metadata"]["uid"] for a in st.get("active") or []):
                return None, changed
        st.setdefault("active", []).append(job_reference(created))
        st["lastScheduleTime"] = scheduled.astimezone(datetime.timezone.utc).strftime(clock.SECONDS)
        return next_schedule_delay(cj, now, sched), True

    async def _cleanup_finished(self, cj: dict, jobs: list[dict]) -> bool:
        """Delete the oldest finished Jobs beyond successfulJobsHistoryLimit and failedJobsHistoryLimit."""
        spec = cj.get("spec") or {}
        changed = False
        for kind, limit in (("Complete", spec.get("successfulJobsHistoryLimit")),
                            ("Failed", spec.get("failedJobsHistoryLimit"))):
            if limit is None:
                continue
            done = sorted((j for j in jobs if finished_type(j) == kind), key=by_start_time)
            for j in done[:max(0, len(done) - limit)]:
                changed |= await self._delete_job(cj, j)
        return changed

    async def _delete_job(self, cj: dict, job: dict) -> bool:
        try:
            await self.client.delete("jobs", job["metadata"]["name"], job["metadata"]["namespace"],
                                     propagation_policy="Background")
        except ApiError as e:
            await self.event(cj, "FailedDelete", f"Deleted job: {e.message}", "Warning")
            return False
        cj["status"]["active"] = [a for a in cj["status"].get("active") or [] if a.get("uid") != job["metadata"]["uid"]]
        await self.event(cj, "SuccessfulDelete", f"Deleted job {job['metadata']['name']}")
        return True


def _key(obj: dict) -> str:
    return f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"
