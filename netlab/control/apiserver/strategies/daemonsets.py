"""DaemonSets: the API defaults (RollingUpdate with maxUnavailable 1 and maxSurge 0, revision
history), the template generation upstream keeps in the `deprecated.daemonset.template.generation`
annotation, the validation of selector, template and rolling update, a selector that may not
change, the status' required counters, and kubectl's columns."""

from __future__ import annotations

import re
from typing import Any

from netlab.api.selectors import format_label_selector
from netlab.control.apiserver import podspec, tables
from netlab.control.apiserver import validation as v
from netlab.control.apiserver.strategies import base

TEMPLATE_GENERATION = "deprecated.daemonset.template.generation"
PERCENT = re.compile(r"^[0-9]+%$")


class Strategy(base.Strategy):
    generation = True
    columns = [tables.NAME,
               tables.col("Desired", "integer", desc="The total number of nodes that should be running the daemon pod "
                          "(including nodes correctly running the daemon pod)."),
               tables.col("Current", "integer", desc="The number of nodes that are running at least 1 daemon pod and "
                          "are supposed to run the daemon pod."),
               tables.col("Ready", "integer", desc="numberReady is the number of nodes that should be running the "
                          "daemon pod and have one or more of the daemon pod running with a Ready Condition."),
               tables.col("Up-to-date", "integer", desc="The total number of nodes that are running updated daemon "
                          "pod"),
               tables.col("Available", "integer", desc="The number of nodes that should be running the daemon pod "
                          "and have one or more of the daemon pod running and available (ready for at least "
                          "spec.minReadySeconds)"),
               tables.col("Node Selector", desc="NodeSelector is a selector which must be true for the pod to fit on "
                          "a node. Selector which must match a node's labels for the pod to be scheduled on that "
                          "node."),
               tables.AGE,
               tables.col("Containers", priority=1, desc="Names of each container in the template."),
               tables.col("Images", priority=1, desc="Images referenced by each container in the template."),
               tables.col("Selector", priority=1, desc="A label query over pods that are managed by the daemon set.")]

    def prepare_create(self, obj: dict) -> None:
        obj["status"] = {"currentNumberScheduled": 0, "numberMisscheduled": 0, "desiredNumberScheduled": 0,
                         "numberReady": 0}
        obj["metadata"].setdefault("annotations", {})[TEMPLATE_GENERATION] = "1"

    def prepare_update(self, obj: dict, old: dict) -> None:
        """A new template is a new template generation."""
        gen = (old["metadata"].get("annotations") or {}).get(TEMPLATE_GENERATION, "1")
        if (obj.get("spec") or {}).get("template") != (old.get("spec") or {}).get("template"):
            gen = str(int(gen) + 1 if gen.isdigit() else 1)
        obj["metadata"]["annotations"] = {**(obj["metadata"].get("annotations") or {}), TEMPLATE_GENERATION: gen}

    def defaults(self, obj: dict) -> None:
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return
        strategy = spec.setdefault("updateStrategy", {})
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            ru = strategy.setdefault("rollingUpdate", {})
            if isinstance(ru, dict):
                ru.setdefault("maxUnavailable", 1)
                ru.setdefault("maxSurge", 0)
        spec.setdefault("revisionHistoryLimit", 10)
        podspec.template_defaults(spec)

    def validate(self, obj: dict) -> list[v.FieldError]:
        spec = obj.get("spec")
        errs = podspec.validate_workload(spec, "daemonset")
        if not isinstance(spec, dict):
            return errs
        tmpl_spec = (spec.get("template") or {}).get("spec") or {}
        if tmpl_spec.get("activeDeadlineSeconds") is not None:
            errs.append(v.forbidden("spec.template.spec.activeDeadlineSeconds",
                                    "activeDeadlineSeconds in DaemonSet is not Supported"))
        for field in ("minReadySeconds", "revisionHistoryLimit"):
            n = spec.get(field, 0)
            if not isinstance(n, int) or n < 0:
                errs.append(v.invalid(f"spec.{field}", n, "must be greater than or equal to 0"))
        strategy = spec.get("updateStrategy") or {}
        stype = strategy.get("type")
        if stype not in ("RollingUpdate", "OnDelete"):
            errs.append(v.not_supported("spec.updateStrategy.type", stype, ["OnDelete", "RollingUpdate"]))
        elif stype == "RollingUpdate":
            errs += _rolling_update(strategy.get("rollingUpdate") or {}, "spec.updateStrategy.rollingUpdate")
        return errs

    def validate_update(self, obj: dict, old: dict) -> list[v.FieldError]:
        return podspec.immutable_selector(obj, old)

    def row(self, d: dict) -> list[Any]:
        spec, st = d.get("spec") or {}, d.get("status") or {}
        pod_spec = (spec.get("template") or {}).get("spec") or {}
        names, images = tables.containers_text(pod_spec)
        node_selector = ",".join(f"{k}={val}" for k, val in sorted((pod_spec.get("nodeSelector") or {}).items()))
        return [d["metadata"]["name"], st.get("desiredNumberScheduled", 0), st.get("currentNumberScheduled", 0),
                st.get("numberReady", 0), st.get("updatedNumberScheduled", 0), st.get("numberAvailable", 0),
                node_selector or "<none>", tables.age(d["metadata"].get("creationTimestamp")), names, images,
                format_label_selector(spec.get("selector"))]


def _int_or_percent_invalid(path: str, value: Any, detail: str) -> v.FieldError:
    # an IntOrString prints as its String(): unquoted, as upstream's messages show it
    return v.FieldError(path, "FieldValueInvalid", f"Invalid value: {value}: {detail}")


def _value(x: Any) -> int:
    if isinstance(x, str) and PERCENT.match(x):
        return int(x[:-1])
    return x if isinstance(x, int) else 0


def _rolling_update(ru: dict, path: str) -> list[v.FieldError]:
    """ValidateRollingUpdateDaemonSet: both fields non-negative ints or percentages, neither over
    100%, and exactly one of them non-zero."""
    errs = []
    for field in ("maxUnavailable", "maxSurge"):
        x = ru.get(field, 0)
        if isinstance(x, str):
            if not PERCENT.match(x):
                errs.append(_int_or_percent_invalid(
                    f"{path}.{field}", x, "a valid percent string must be a numeric string followed by an ending "
                    "'%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')"))
            elif int(x[:-1]) > 100:
                errs.append(_int_or_percent_invalid(f"{path}.{field}", x, "must not be greater than 100%"))
        elif isinstance(x, int) and x < 0:
            errs.append(v.invalid(f"{path}.{field}", x, "must be greater than or equal to 0"))
    unavailable, surge = _value(ru.get("maxUnavailable", 0)), _value(ru.get("maxSurge", 0))
    if unavailable and surge:
        errs.append(_int_or_percent_invalid(f"{path}.maxSurge", ru.get("maxSurge"),
                                            "may not be set when maxUnavailable is non-zero"))
    elif not unavailable and not surge:
        errs.append(v.FieldError(f"{path}.maxUnavailable", "FieldValueRequired",
                                 "Required value: cannot be 0 when maxSurge is 0"))
    return errs
