"""PodTemplates: a stored pod template (its spec defaulted and validated as a pod's), and
kubectl's columns."""

from __future__ import annotations

from typing import Any

from netlab.control.apiserver import podspec, tables
from netlab.control.apiserver import validation as v
from netlab.control.apiserver.strategies import base


class Strategy(base.Strategy):
    columns = [tables.NAME, tables.col("Containers", desc="Names of each container in the template."),
               tables.col("Images", desc="Images referenced by each container in the template."),
               tables.col("Pod Labels", desc="The labels for the pod template.")]

    def defaults(self, obj: dict) -> None:
        podspec.template_defaults(obj)

    def validate(self, obj: dict) -> list[v.FieldError]:
        tmpl = obj.get("template")
        if not isinstance(tmpl, dict) or not isinstance(tmpl.get("spec"), dict):
            return [v.required("template.spec.containers")]
        return v.check_labels((tmpl.get("metadata") or {}).get("labels"), "template.metadata.labels") \
            + podspec.validate(tmpl["spec"], "template.spec")

    def row(self, t: dict) -> list[Any]:
        tmpl = t.get("template") or {}
        names, images = tables.containers_text(tmpl.get("spec") or {})
        labels = (tmpl.get("metadata") or {}).get("labels") or {}
        return [t["metadata"]["name"], names, images,
                ",".join(f"{k}={val}" for k, val in sorted(labels.items())) or "<none>"]
