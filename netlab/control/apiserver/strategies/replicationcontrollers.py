"""ReplicationControllers (v1): the API defaults (the selector and the controller's labels from
the template's labels, one replica), an equality-based selector that must match the template,
restartPolicy Always, the status and scale subresources, an orphaning delete by default (v1's, for
compatibility), and kubectl's columns."""

from __future__ import annotations

from typing import Any

from netlab.control.apiserver import podspec, tables
from netlab.control.apiserver import validation as v
from netlab.control.apiserver.strategies import base


def labels_text(labels: dict | None) -> str:
    """labels.FormatLabels: `k=v,...` sorted by key, or <none>."""
    return ",".join(f"{k}={val}" for k, val in sorted((labels or {}).items())) or "<none>"


class Strategy(base.Strategy):
    field_labels = ("status.replicas",)
    generation = True
    orphan_by_default = True
    columns = [tables.NAME,
               tables.col("Desired", "integer", desc="Replicas is the number of desired replicas. This is a pointer "
                          "to distinguish between explicit zero and unspecified. Defaults to 1."),
               tables.col("Current", "integer", desc="Replicas is the most recently observed number of replicas."),
               tables.col("Ready", "integer", desc="The number of ready replicas for this replication controller."),
               tables.AGE,
               tables.col("Containers", priority=1, desc="Names of each container in the template."),
               tables.col("Images", priority=1, desc="Images referenced by each container in the template."),
               tables.col("Selector", priority=1, desc="Selector is a label query over pods that should match the "
                          "Replicas count.")]

    def prepare_create(self, obj: dict) -> None:
        obj["status"] = {"replicas": 0}

    def defaults(self, obj: dict) -> None:
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return
        labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels")
        if labels is not None:
            if not spec.get("selector"):
                spec["selector"] = dict(labels)
            if not obj["metadata"].get("labels"):
                obj["metadata"]["labels"] = dict(labels)
        spec.setdefault("replicas", 1)
        podspec.template_defaults(spec)

    def validate(self, obj: dict) -> list[v.FieldError]:
        spec = obj.get("spec")
        if not isinstance(spec, dict):
            return [v.required("spec")]
        errs: list[v.FieldError] = []
        if (spec.get("minReadySeconds") or 0) < 0:
            errs.append(v.invalid("spec.minReadySeconds", spec["minReadySeconds"], "must be greater than or equal to 0"))
        selector = spec.get("selector") or {}
        if not selector:
            errs.append(v.required("spec.selector"))
        replicas = spec.get("replicas", 1)
        if not isinstance(replicas, int) or replicas < 0:
            errs.append(v.invalid("spec.replicas", replicas, "must be greater than or equal to 0"))
        tmpl = spec.get("template")
        if not isinstance(tmpl, dict):
            return errs + [v.required("spec.template")]
        labels = (tmpl.get("metadata") or {}).get("labels") or {}
        if selector and any(labels.get(k) != val for k, val in selector.items()):
            errs.append(v.invalid("spec.template.metadata.labels", labels, "`selector` does not match template `labels`"))
        errs += v.check_labels(labels, "spec.template.metadata.labels")
        pod = tmpl.get("spec")
        if not isinstance(pod, dict):
            return errs + [v.required("spec.template.spec")]
        errs += podspec.validate(pod, "spec.template.spec")
        if pod.get("restartPolicy", "Always") != "Always":
            errs.append(v.not_supported("spec.template.spec.restartPolicy", pod["restartPolicy"], ["Always"]))
        if pod.get("activeDeadlineSeconds") is not None:
            errs.append(v.forbidden("spec.template.spec.activeDeadlineSeconds",
                                    "activeDeadlineSeconds in ReplicationController is not Supported"))
        return errs

    def row(self, r: dict) -> list[Any]:
        spec, st = r.get("spec") or {}, r.get("status") or {}
        names, images = tables.containers_text((spec.get("template") or {}).get("spec") or {})
        return [r["metadata"]["name"], spec.get("replicas", 1), st.get("replicas", 0), st.get("readyReplicas", 0),
                tables.age(r["metadata"].get("creationTimestamp")), names, images, labels_text(spec.get("selector"))]

    def to_scale(self, obj: dict) -> dict:
        """An equality-based selector: a plain map of labels."""
        sel = (obj.get("spec") or {}).get("selector") or {}
        return base.scale_of(obj, (obj.get("spec") or {}).get("replicas", 1), (obj.get("status") or {}).get("replicas", 0),
                             ",".join(f"{k}={val}" for k, val in sorted(sel.items())))
