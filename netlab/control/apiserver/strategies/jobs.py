"""Jobs (batch/v1): the API defaults (completions and parallelism, backoffLimit 6, completion mode,
suspend, podReplacementPolicy, manualSelector), the selector and pod labels generated from the
Job's uid and name, the validation of the spec (restart policy OnFailure or Never, Indexed
completions, the pod failure policy), what an update may not change, the status subresource, an
orphaning delete by default (batch/v1's, for compatibility), and kubectl's columns."""

from __future__ import annotations

import copy
import re
from typing import Any

from netlab.api.selectors import selector_matches, format_label_selector
from netlab.control.apiserver import podspec, tables
from netlab.control.apiserver import validation as v
from netlab.control.apiserver.strategies import base
from netlab.kit import clock

CONTROLLER_UID, JOB_NAME = "batch.kubernetes.io/controller-uid", "batch.kubernetes.io/job-name"
LEGACY_CONTROLLER_UID, LEGACY_JOB_NAME = "controller-uid", "job-name"
MAX_INT32 = 2 ** 31 - 1
MAX_INDEXED_PARALLELISM = 100_000
ACTIONS = ["Count", "FailIndex", "FailJob", "Ignore"]
OPERATORS = ["In", "NotIn"]
CONDITION_STATUSES = ["False", "True", "Unknown"]


def required(path: str, detail: str) -> v.FieldError:
    """field.Required with a detail (`Required value: valid values: ...`)."""
    return v.FieldError(path, "FieldValueRequired", f"Required value: {detail}" if detail else "Required value")


def nonnegative(spec: dict, field: str, path: str) -> list[v.FieldError]:
    value = spec.get(field)
    if value is not None and isinstance(value, int) and value < 0:
        return [v.invalid(f"{path}.{field}", value, "must be greater than or equal to 0")]
    return []


def job_spec_defaults(spec: dict) -> None:
    """SetDefaults_Job's spec part (a CronJob's jobTemplate gets only the pod template's)."""
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
        spec["parallelism"] = 1
    spec.setdefault("parallelism", 1)
    if spec.get("backoffLimit") is None:
        spec["backoffLimit"] = MAX_INT32 if spec.get("backoffLimitPerIndex") is not None else 6
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    if spec.get("podReplacementPolicy") is None:
        spec["podReplacementPolicy"] = "Failed" if spec.get("podFailurePolicy") is not None else "TerminatingOrFailed"
    spec.setdefault("manualSelector", False)


def pod_failure_policy_defaults(spec: dict) -> None:
    for rule in (spec.get("podFailurePolicy") or {}).get("rules") or []:
        for pattern in (rule or {}).get("onPodConditions") or []:
            if isinstance(pattern, dict) and not pattern.get("status"):
                pattern["status"] = "True"


def validate_job_spec(spec: dict, path: str) -> list[v.FieldError]:
    """validateJobSpec: what a Job's spec and a CronJob's jobTemplate.spec share."""
    errs: list[v.FieldError] = []
    for field in ("parallelism", "completions", "activeDeadlineSeconds", "backoffLimit", "ttlSecondsAfterFinished",
                  "backoffLimitPerIndex", "maxFailedIndexes"):
        errs += nonnegative(spec, field, path)
    if spec.get("maxFailedIndexes") is not None and spec.get("backoffLimitPerIndex") is None:
        errs.append(required(f"{path}.backoffLimitPerIndex", "when maxFailedIndexes is specified"))
    mode = spec.get("completionMode")
    if mode is not None:
        if mode not in ("NonIndexed", "Indexed"):
            errs.append(v.not_supported(f"{path}.completionMode", mode, ["NonIndexed", "Indexed"]))
        if mode == "Indexed":
            if spec.get("completions") is None:
                errs.append(required(f"{path}.completions", "when completion mode is Indexed"))
            if (spec.get("parallelism") or 0) > MAX_INDEXED_PARALLELISM:
                errs.append(v.invalid(f"{path}.parallelism", spec["parallelism"], "must be less than or equal to "
                                      f"{MAX_INDEXED_PARALLELISM} when completion mode is Indexed"))
    if mode in (None, "NonIndexed"):
        for field in ("backoffLimitPerIndex", "maxFailedIndexes"):
            if spec.get(field) is not None:
                errs.append(v.invalid(f"{path}.{field}", spec[field], "requires indexed completion mode"))
    tmpl = spec.get("template") if isinstance(spec.get("template"), dict) else {}
    pod = tmpl.get("spec") if isinstance(tmpl.get("spec"), dict) else None
    if spec.get("podFailurePolicy") is not None:
        errs += _validate_pod_failure_policy(spec, pod or {}, f"{path}.podFailurePolicy")
    if spec.get("successPolicy") is not None and mode != "Indexed":
        errs.append(v.invalid(f"{path}.successPolicy", spec["successPolicy"], "requires indexed completion mode"))
    replacement = spec.get("podReplacementPolicy")
    if replacement is not None:
        if spec.get("podFailurePolicy") is not None:
            if replacement != "Failed":
                errs.append(v.not_supported(f"{path}.podReplacementPolicy", replacement, ["Failed"]))
        elif replacement not in ("Failed", "TerminatingOrFailed"):
            errs.append(v.not_supported(f"{path}.podReplacementPolicy", replacement, ["Failed", "TerminatingOrFailed"]))
    if pod is None:
        errs.append(v.required(f"{path}.template.spec"))
        return errs
    errs += podspec.validate(pod, f"{path}.template.spec")
    errs += v.check_labels((tmpl.get("metadata") or {}).get("labels"), f"{path}.template.metadata.labels")
    policy = pod.get("restartPolicy") or ""
    rp = f"{path}.template.spec.restartPolicy"
    if policy in ("Always", ""):
        errs.append(required(rp, 'valid values: "OnFailure", "Never"'))
    elif policy not in ("OnFailure", "Never"):
        errs.append(v.not_supported(rp, policy, ["OnFailure", "Never"]))
    elif spec.get("podFailurePolicy") is not None and policy != "Never":
        errs.append(v.invalid(rp, policy, 'only "Never" is supported when podFailurePolicy is specified'))
    return errs


def _validate_pod_failure_policy(spec: dict, pod: dict, path: str) -> list[v.FieldError]:
    errs: list[v.FieldError] = []
    rules = (spec.get("podFailurePolicy") or {}).get("rules") or []
    if len(rules) > 20:
        errs.append(v.FieldError(f"{path}.rules", "FieldValueTooMany",
                                 f"Too many: {len(rules)}: must have at most 20 items"))
    names = {c.get("name") for c in (pod.get("containers") or []) + (pod.get("initContainers") or [])
             if isinstance(c, dict)}
    for i, rule in enumerate(rules):
        rp = f"{path}.rules[{i}]"
        action = rule.get("action") or ""
        if not action:
            errs.append(required(f"{rp}.action", 'valid values: ["Count" "FailIndex" "FailJob" "Ignore"]'))
        elif action == "FailIndex":
            if spec.get("backoffLimitPerIndex") is None:
                errs.append(v.invalid(f"{rp}.action", action, "requires the backoffLimitPerIndex to be set"))
        elif action not in ACTIONS:
            errs.append(v.not_supported(f"{rp}.action", action, ACTIONS))
        codes, conds = rule.get("onExitCodes"), rule.get("onPodConditions") or []
        if codes is not None:
            cp = f"{rp}.onExitCodes"
            op = codes.get("operator") or ""
            if not op:
                errs.append(required(f"{cp}.operator", 'valid values: ["In" "NotIn"]'))
            elif op not in OPERATORS:
                errs.append(v.not_supported(f"{cp}.operator", op, OPERATORS))
            if codes.get("containerName") is not None and codes["containerName"] not in names:
                errs.append(v.invalid(f"{cp}.containerName", codes["containerName"],
                                      "must be one of the container or initContainer names in the pod template"))
            values = codes.get("values") or []
            if not values:
                errs.append(v.invalid(f"{cp}.values", "[]int32(nil)", "at least one value is required"))
            seen: set[int] = set()
            for j, value in enumerate(values):
                if op == "In" and value == 0:
                    errs.append(v.invalid(f"{cp}.values[{j}]", value, "must not be 0 for the In operator"))
                if value in seen:
                    errs.append(v.duplicate(f"{cp}.values[{j}]", value))
                seen.add(value)
            if values != sorted(values):
                errs.append(v.invalid(f"{cp}.values", values, "must be ordered"))
        for j, pattern in enumerate(conds):
            status = pattern.get("status") or ""
            if not status:
                errs.append(required(f"{rp}.onPodConditions[{j}].status", 'valid values: ["False" "True" "Unknown"]'))
            elif status not in CONDITION_STATUSES:
                errs.append(v.not_supported(f"{rp}.onPodConditions[{j}].status", status, CONDITION_STATUSES))
        if codes is not None and conds:
            errs.append(v.FieldError(rp, "FieldValueInvalid",
                                     "Invalid value: specifying both OnExitCodes and OnPodConditions is not supported"))
        if codes is None and not conds:
            errs.append(v.FieldError(rp, "FieldValueInvalid",
                                     "Invalid value: specifying one of OnExitCodes and OnPodConditions is required"))
    return errs


def generate_selector(obj: dict) -> None:
    """The pod labels naming the Job and its uid, and a selector of the uid (upstream's
    generateSelector, when manualSelector is not set)."""
    meta, spec = obj["metadata"], obj["spec"]
    tmpl = spec.get("template")
    if not isinstance(tmpl, dict):
        return  # validation says what is missing
    if not isinstance(tmpl.get("metadata"), dict):
        tmpl["metadata"] = {}
    labels = tmpl["metadata"].get("labels")
    if not isinstance(labels, dict):
        labels = tmpl["metadata"]["labels"] = {}
    for key in (LEGACY_JOB_NAME, JOB_NAME):
        labels.setdefault(key, meta.get("name", ""))
    for key in (LEGACY_CONTROLLER_UID, CONTROLLER_UID):
        labels.setdefault(key, meta["uid"])
    selector = spec.get("selector") if isinstance(spec.get("selector"), dict) else {}
    match = selector.get("matchLabels") if isinstance(selector.get("matchLabels"), dict) else {}
    match.setdefault(CONTROLLER_UID, meta["uid"])
    selector["matchLabels"] = match
    spec["selector"] = selector


def _has_label(labels: dict, key: str, want: str) -> list[v.FieldError]:
    path = f"spec.template.metadata.labels[{key}]"
    if key not in labels:
        return [required(path, want)]
    if labels[key] != want:
        return [v.invalid(path, labels, f"must be '{want}'")]
    return []


class Strategy(base.Strategy):
    generation = True
    orphan_by_default = True  # batch/v1's DefaultGarbageCollectionPolicy, kept for compatibility
    columns = [tables.NAME, tables.col("Status", desc="Status of the job."),
               tables.col("Completions", desc="The number of pods which reached phase Succeeded."),
               tables.col("Duration", desc="Time required to complete the job."), tables.AGE,
               tables.col("Containers", priority=1, desc="Names of each container in the template."),
               tables.col("Images", priority=1, desc="Images referenced by each container in the template."),
               tables.col("Selector", priority=1, desc="A label query over pods that should match the pod count.")]

    def prepare_create(self, obj: dict) -> None:
        spec = obj.get("spec")
        if isinstance(spec, dict) and spec.get("manualSelector") is not True:
            generate_selector(obj)
        obj["status"] = {}

    def defaults(self, obj: dict) -> None:
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return
        job_spec_defaults(spec)
        pod_failure_policy_defaults(spec)
        labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels")
        if labels and not obj["metadata"].get("labels"):
            obj["metadata"]["labels"] = dict(labels)
        podspec.template_defaults(spec)

    def validate(self, obj: dict) -> list[v.FieldError]:
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return [v.required("spec")]
        meta = obj["metadata"]
        errs: list[v.FieldError] = []
        labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        selector = spec.get("selector")
        if spec.get("manualSelector") is not True and selector is not None:
            if not meta.get("uid"):
                errs.append(v.required("metadata.uid"))
            for key, want in ((LEGACY_CONTROLLER_UID, meta.get("uid", "")), (LEGACY_JOB_NAME, meta.get("name", "")),
                              (CONTROLLER_UID, meta.get("uid", "")), (JOB_NAME, meta.get("name", ""))):
                errs += _has_label(labels, key, want)
            expected = {CONTROLLER_UID: meta.get("uid", ""), JOB_NAME: meta.get("name", ""),
                        LEGACY_CONTROLLER_UID: meta.get("uid", ""), LEGACY_JOB_NAME: meta.get("name", "")}
            if not selector_matches(selector, expected):
                errs.append(v.invalid("spec.selector", selector, "`selector` not auto-generated"))
        errs += validate_job_spec(spec, "spec")
        if selector is None:
            errs.append(v.required("spec.selector"))
        elif not selector_matches(selector, labels):
            errs.append(v.invalid("spec.template.metadata.labels", labels, "`selector` does not match template `labels`"))
        if spec.get("completionMode") == "Indexed" and (spec.get("completions") or 0) > 0:
            hostname = f"{meta.get('name', '')}-{spec['completions'] - 1}"
            if len(hostname) > 63 or not v.DNS1123_LABEL.match(hostname):
                errs.append(v.invalid("metadata.name", meta.get("name", ""),
                                      f"will not able to create pod with invalid DNS label: {hostname}"))
        return errs

    def validate_update(self, obj: dict, old: dict) -> list[v.FieldError]:
        spec, old_spec = obj.get("spec") or {}, old.get("spec") or {}
        errs: list[v.FieldError] = []
        indexed = spec.get("completionMode") == "Indexed"
        if spec.get("completions") != old_spec.get("completions"):
            if not indexed:
                errs.append(v.invalid("spec.completions", spec.get("completions"), "field is immutable"))
            elif spec.get("completions") is not None and spec["completions"] != spec.get("parallelism"):
                errs.append(v.invalid("spec.completions", spec["completions"],
                                      "can only be modified in tandem with spec.parallelism"))
        if spec.get("selector") != old_spec.get("selector"):
            errs.append(v.invalid("spec.selector", spec.get("selector"), "field is immutable"))
        if _template_view(spec, old) != _template_view(old_spec, old):
            errs.append(v.invalid("spec.template", "core.PodTemplateSpec{...}", "field is immutable"))
        for field in ("completionMode", "podFailurePolicy", "backoffLimitPerIndex", "managedBy", "successPolicy"):
            if spec.get(field) != old_spec.get(field):
                errs.append(v.invalid(f"spec.{field}", spec.get(field), "field is immutable"))
        return errs

    def row(self, j: dict) -> list[Any]:
        spec, st = j.get("spec") or {}, j.get("status") or {}
        succeeded = st.get("succeeded", 0)
        if spec.get("completions") is not None:
            completions = f"{succeeded}/{spec['completions']}"
        elif (spec.get("parallelism") or 0) > 1:
            completions = f"{succeeded}/1 of {spec['parallelism']}"
        else:
            completions = f"{succeeded}/1"
        duration = ""
        if st.get("startTime"):
            end = clock.parse(st["completionTime"]) if st.get("completionTime") else clock.utcnow()
            duration = tables.human_duration((end - clock.parse(st["startTime"])).total_seconds())
        names, images = tables.containers_text((spec.get("template") or {}).get("spec") or {})
        return [j["metadata"]["name"], job_status_text(j), completions, duration,
                tables.age(j["metadata"].get("creationTimestamp")), names, images,
                format_label_selector(spec.get("selector"))]


def condition_true(job: dict, kind: str) -> bool:
    """The first condition of `kind` is True (hasJobCondition)."""
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") == kind:
            return c.get("status") == "True"
    return False


def job_status_text(j: dict) -> str:
    """kubectl's STATUS column (1.30+)."""
    if condition_true(j, "Complete"):
        return "Complete"
    if condition_true(j, "Failed"):
        return "Failed"
    if j["metadata"].get("deletionTimestamp"):
        return "Terminating"
    if condition_true(j, "Suspended"):
        return "Suspended"
    if condition_true(j, "FailureTarget"):
        return "FailureTarget"
    return "Running"


_SCHEDULING = re.compile(r"^(nodeSelector|tolerations|schedulingGates)$")


def _template_view(spec: dict, old: dict) -> dict:
    """The template as immutability compares it: a suspended Job that never started may change its
    scheduling directives (node affinity and selector, tolerations, scheduling gates) and its pod
    labels and annotations."""
    tmpl = copy.deepcopy(spec.get("template") or {})
    old_spec, old_status = old.get("spec") or {}, old.get("status") or {}
    if old_spec.get("suspend") is True and not old_status.get("startTime"):
        meta = tmpl.setdefault("metadata", {})
        meta.pop("labels", None)
        meta.pop("annotations", None)
        pod = tmpl.get("spec") or {}
        for k in [k for k in pod if _SCHEDULING.match(k)]:
            pod.pop(k)
        if isinstance(pod.get("affinity"), dict):
            pod["affinity"].pop("nodeAffinity", None)
            if not pod["affinity"]:
                pod.pop("affinity")
    return tmpl
