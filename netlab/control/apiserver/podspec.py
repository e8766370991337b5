"""The pod spec, as Pods and the templates of Deployments and ReplicaSets hold it: its API
defaults, its validation (containers, ports, probes, policies; a workload's selector and
template), and the Pod's QoS class."""

from __future__ import annotations

import re
from typing import Any

from netlab.api.selectors import selector_matches
from netlab.control.apiserver import validation as v


def defaults(spec: dict) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("enableServiceLinks", True)
    for field in ("initContainers", "containers"):
        for c in spec.get(field) or []:
            if not isinstance(c, dict):
                continue
            c.setdefault("terminationMessagePath", "/dev/termination-log")
            c.setdefault("terminationMessagePolicy", "File")
            image = str(c.get("image", ""))
            tag = image.rsplit("/", 1)[-1].partition(":")[2] if "@" not in image else "digest"
            c.setdefault("imagePullPolicy", "Always" if tag in ("", "latest") else "IfNotPresent")
            c.setdefault("resources", {})
            for p in c.get("ports") or []:
                if isinstance(p, dict):
                    p.setdefault("protocol", "TCP")
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                pr = c.get(probe)
                if isinstance(pr, dict):
                    pr.setdefault("timeoutSeconds", 1)
                    pr.setdefault("periodSeconds", 10)
                    pr.setdefault("successThreshold", 1)
                    pr.setdefault("failureThreshold", 3)
                    if isinstance(pr.get("httpGet"), dict):
                        pr["httpGet"].setdefault("path", "/")
                        pr["httpGet"].setdefault("scheme", "HTTP")


def template_defaults(spec: dict) -> None:
    tmpl = spec.get("template")
    if isinstance(tmpl, dict):
        tmpl.setdefault("metadata", {}).setdefault("creationTimestamp", None)
        if isinstance(tmpl.get("spec"), dict):
            defaults(tmpl["spec"])


def validate(spec: dict, path: str) -> list[v.FieldError]:
    errs: list[v.FieldError] = []
    containers = spec.get("containers")
    if not containers:
        return [v.required(f"{path}.containers")]
    names: set[str] = set()
    for field in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(field) or []):
            p = f"{path}.{field}[{i}]"
            if not isinstance(c, dict):
                errs.append(v.invalid(p, c, "must be an object"))
                continue
            name = c.get("name")
            if not name:
                errs.append(v.required(f"{p}.name"))
            elif not isinstance(name, str) or len(name) > 63 or not v.DNS1123_LABEL.match(name):
                errs.append(v.invalid(f"{p}.name", name, v.label_msg()))
            elif name in names:
                errs.append(v.duplicate(f"{p}.name", name))
            else:
                names.add(name)
            if not c.get("image"):
                errs.append(v.required(f"{p}.image"))
            port_names: set[str] = set()
            for j, port in enumerate(c.get("ports") or []):
                pp = f"{p}.ports[{j}]"
                errs += v.check_port(port.get("containerPort"), f"{pp}.containerPort")
                if "hostPort" in port and port["hostPort"]:
                    errs += v.check_port(port["hostPort"], f"{pp}.hostPort")
                errs += v.check_protocol(port.get("protocol", "TCP"), f"{pp}.protocol")
                pn = port.get("name")
                if pn:
                    if not v.IANA_SVC_NAME.match(pn) or not re.search("[a-z]", pn):
                        errs.append(v.invalid(f"{pp}.name", pn, "must be no more than 15 characters and contain only "
                                            "lowercase alphanumeric characters and '-'"))
                    elif pn in port_names:
                        errs.append(v.duplicate(f"{pp}.name", pn))
                    port_names.add(pn)
            for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
                pr = c.get(probe)
                if pr is not None:
                    handlers = [h for h in ("httpGet", "tcpSocket", "exec", "grpc") if h in pr]
                    if len(handlers) != 1:
                        errs.append(v.required(f"{p}.{probe}") if not handlers else
                                    v.forbidden(f"{p}.{probe}", "may not specify more than 1 handler type"))
    policy = spec.get("restartPolicy", "Always")
    if policy not in ("Always", "OnFailure", "Never"):
        errs.append(v.not_supported(f"{path}.restartPolicy", policy, ["Always", "OnFailure", "Never"]))
    dns = spec.get("dnsPolicy", "ClusterFirst")
    if dns not in ("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"):
        errs.append(v.not_supported(f"{path}.dnsPolicy", dns, ["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"]))
    if dns == "None" and not (spec.get("dnsConfig") or {}).get("nameservers"):
        errs.append(v.required(f"{path}.dnsConfig.nameservers"))
    return errs


def validate_workload(spec: Any, kind: str = "deployment") -> list[v.FieldError]:
    """A workload's replicas, selector and template; `kind` names it as upstream's message on an
    empty selector does (ReplicaSets too say "deployment")."""
    if not isinstance(spec, dict):
        return [v.required("spec")]
    errs: list[v.FieldError] = []
    replicas = spec.get("replicas", 1)
    if not isinstance(replicas, int) or replicas < 0:
        errs.append(v.invalid("spec.replicas", replicas, "must be greater than or equal to 0"))
    selector = spec.get("selector")
    tmpl = spec.get("template") or {}
    labels = (tmpl.get("metadata") or {}).get("labels") or {}
    if not selector:
        errs.append(v.required("spec.selector"))
    elif not (selector.get("matchLabels") or selector.get("matchExpressions")):
        errs.append(v.invalid("spec.selector", selector, f"empty selector is invalid for {kind}"))
    elif not selector_matches(selector, labels):
        errs.append(v.invalid("spec.template.metadata.labels", labels, "`selector` does not match template `labels`"))
    if not isinstance(tmpl.get("spec"), dict):
        errs.append(v.required("spec.template.spec"))
    else:
        errs += validate(tmpl["spec"], "spec.template.spec")
        policy = tmpl["spec"].get("restartPolicy", "Always")
        if policy != "Always":
            errs.append(v.not_supported("spec.template.spec.restartPolicy", policy, ["Always"]))
    errs += v.check_labels(labels, "spec.template.metadata.labels")
    return errs


def immutable_selector(obj: dict, old: dict) -> list[v.FieldError]:
    sel = (obj.get("spec") or {}).get("selector")
    if sel != (old.get("spec") or {}).get("selector"):
        return [v.FieldError("spec.selector", "FieldValueInvalid",
                             f"Invalid value: {go_label_selector(sel)}: field is immutable")]
    return []


def go_label_selector(sel: dict | None) -> str:
    """A LabelSelector as upstream's field errors print it (Go's %#v of v1.LabelSelector)."""
    def strings(m: dict | None) -> str:
        return "map[string]string(nil)" if m is None else \
            "map[string]string{" + ", ".join(f'"{k}":"{m[k]}"' for k in sorted(m)) + "}"
    sel = sel or {}
    exprs = sel.get("matchExpressions")
    reqs = "[]v1.LabelSelectorRequirement(nil)" if exprs is None else "[]v1.LabelSelectorRequirement{" + ", ".join(
        f'v1.LabelSelectorRequirement{{Key:"{e.get("key", "")}", Operator:"{e.get("operator", "")}", Values:'
        + ("[]string(nil)" if e.get("values") is None else "[]string{" + ", ".join(f'"{x}"' for x in e["values"]) + "}")
        + "}" for e in exprs) + "}"
    return f"v1.LabelSelector{{MatchLabels:{strings(sel.get('matchLabels'))}, MatchExpressions:{reqs}}}"


def qos_class(spec: dict) -> str:
    containers = spec.get("containers") or []
    res = [c.get("resources") or {} for c in containers if isinstance(c, dict)]
    if not any(x.get("limits") or x.get("requests") for x in res):
        return "BestEffort"
    if all(x.get("limits") and x.get("requests", x.get("limits")) == x.get("limits")
           and {"cpu", "memory"} <= set(x["limits"]) for x in res):
        return "Guaranteed"
    return "Burstable"
