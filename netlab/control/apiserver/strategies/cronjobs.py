"""CronJobs (batch/v1): the API defaults (concurrencyPolicy Allow, suspend, history limits 3 and 1),
the schedule as robfig/cron parses it, the time zone, the jobTemplate validated as a Job's spec
(its selector generated per Job), names of at most 52 characters (the Job name adds 11), the
status subresource, and kubectl's columns."""

from __future__ import annotations

import re
from typing import Any

from netlab.api.selectors import format_label_selector
from netlab.control import cron
from netlab.control.apiserver import podspec, tables
from netlab.control.apiserver import validation as v
from netlab.control.apiserver.strategies import base
from netlab.control.apiserver.strategies.jobs import nonnegative, pod_failure_policy_defaults, validate_job_spec

POLICIES = ["Allow", "Forbid", "Replace"]
TIME_ZONE_PART = r"^[A-Za-z\.\-_0-9+]{1,14}$"


class Strategy(base.Strategy):
    generation = True
    columns = [tables.NAME, tables.col("Schedule", desc="The schedule in Cron format, see "
                                       "https://en.wikipedia.org/wiki/Cron."),
               tables.col("Timezone", desc="The time zone name for the given schedule."),
               tables.col("Suspend", "boolean", desc="This flag tells the controller to suspend subsequent "
                          "executions, it does not apply to already started executions.  Defaults to false."),
               tables.col("Active", "integer", desc="A list of pointers to currently running jobs."),
               tables.col("Last Schedule", desc="Information when was the last time the job was successfully "
                          "scheduled."), tables.AGE,
               tables.col("Containers", priority=1, desc="Names of each container in the template."),
               tables.col("Images", priority=1, desc="Images referenced by each container in the template."),
               tables.col("Selector", priority=1, desc="A label query over pods that should match the pod count.")]

    def prepare_create(self, obj: dict) -> None:
        obj["status"] = {}

    def defaults(self, obj: dict) -> None:
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return
        if not spec.get("concurrencyPolicy"):
            spec["concurrencyPolicy"] = "Allow"
        spec.setdefault("suspend", False)
        spec.setdefault("successfulJobsHistoryLimit", 3)
        spec.setdefault("failedJobsHistoryLimit", 1)
        tmpl = spec.get("jobTemplate")
        if isinstance(tmpl, dict):
            tmpl.setdefault("metadata", {}).setdefault("creationTimestamp", None)
            if isinstance(tmpl.get("spec"), dict):
                pod_failure_policy_defaults(tmpl["spec"])
                podspec.template_defaults(tmpl["spec"])

    def validate(self, obj: dict) -> list[v.FieldError]:
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return [v.required("spec")]
        errs: list[v.FieldError] = []
        schedule = spec.get("schedule") or ""
        if not schedule:
            errs.append(v.required("spec.schedule"))
        elif (problem := cron.parse_error(schedule)) is not None:
            errs.append(v.invalid("spec.schedule", schedule, problem))
        errs += nonnegative(spec, "startingDeadlineSeconds", "spec")
        policy = spec.get("concurrencyPolicy", "")
        if not policy:
            errs.append(v.required("spec.concurrencyPolicy"))
        elif policy not in POLICIES:
            errs.append(v.not_supported("spec.concurrencyPolicy", policy, POLICIES))
        tmpl = spec.get("jobTemplate")
        job_spec = tmpl.get("spec") if isinstance(tmpl, dict) else None
        if not isinstance(job_spec, dict):
            errs.append(v.required("spec.jobTemplate.spec.template.spec"))
        else:
            errs += validate_job_spec(job_spec, "spec.jobTemplate.spec")
            if job_spec.get("selector") is not None:
                errs.append(v.invalid("spec.jobTemplate.spec.selector", job_spec["selector"],
                                      "`selector` will be auto-generated"))
            if job_spec.get("manualSelector") is True:
                errs.append(v.not_supported("spec.jobTemplate.spec.manualSelector", True, ["nil", "false"]))
        errs += nonnegative(spec, "successfulJobsHistoryLimit", "spec")
        errs += nonnegative(spec, "failedJobsHistoryLimit", "spec")
        return errs

    def validate_create(self, obj: dict) -> list[v.FieldError]:
        spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
        errs = _tz_in_schedule(spec, None) + _validate_time_zone(spec.get("timeZone"))
        name = obj["metadata"].get("name", "")
        if len(name) > 63 - 11:  # the controller appends `-<minutes since epoch>` for its Jobs
            errs.append(v.invalid("metadata.name", name, "must be no more than 52 characters"))
        return errs

    def validate_update(self, obj: dict, old: dict) -> list[v.FieldError]:
        """What depends on the old spec: a schedule with TZ stays allowed, the time zone is checked
        when it changes."""
        spec, old_spec = obj.get("spec") or {}, old.get("spec") or {}
        errs = _tz_in_schedule(spec, old_spec)
        if old_spec.get("timeZone") != spec.get("timeZone"):
            errs += _validate_time_zone(spec.get("timeZone"))
        return errs

    def row(self, c: dict) -> list[Any]:
        spec, st = c.get("spec") or {}, c.get("status") or {}
        job = ((spec.get("jobTemplate") or {}).get("spec") or {})
        names, images = tables.containers_text((job.get("template") or {}).get("spec") or {})
        suspend = spec.get("suspend")
        return [c["metadata"]["name"], spec.get("schedule", ""),
                spec["timeZone"] if spec.get("timeZone") is not None else "<none>",
                "<unset>" if suspend is None else "True" if suspend else "False", len(st.get("active") or []),
                tables.age(st["lastScheduleTime"]) if st.get("lastScheduleTime") else "<none>",
                tables.age(c["metadata"].get("creationTimestamp")), names, images,
                format_label_selector(job.get("selector"))]


def _tz_in_schedule(spec: dict, old_spec: dict | None) -> list[v.FieldError]:
    schedule = spec.get("schedule") or ""
    allow = old_spec is not None and "TZ" in (old_spec.get("schedule") or "")
    if allow and "TZ" in schedule and spec.get("timeZone") is not None:
        return [v.invalid("spec.schedule", schedule, "cannot use both timeZone field and TZ or CRON_TZ in schedule")]
    if not allow and "TZ" in schedule:
        return [v.invalid("spec.schedule", schedule, "cannot use TZ or CRON_TZ in schedule, use timeZone field instead")]
    return []


def _validate_time_zone(tz: Any) -> list[v.FieldError]:
    if tz is None:
        return []
    path = "spec.timeZone"
    if tz == "":
        return [v.invalid(path, tz, "timeZone must be nil or non-empty string")]
    if any(p in (".", "..") or p.startswith("-") or not re.match(TIME_ZONE_PART, p) for p in str(tz).split("/")):
        return [v.invalid(path, tz, f"unknown time zone {tz}")]
    errs = []
    if str(tz).lower() == "local":
        errs.append(v.invalid(path, tz, "timeZone must be an explicit time zone as defined in "
                              "https://www.iana.org/time-zones"))
    else:
        try:
            cron.load_zone(str(tz))
        except cron.ScheduleError as e:
            errs.append(v.invalid(path, tz, str(e)))
    return errs
