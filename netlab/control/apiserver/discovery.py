"""The discovery documents kubectl and the clients read first: /version, /api, /apis, each group
and each group-version's resource list, all made from the kinds served: those of
netlab/api/resources.py and the custom resources of the Established CRDs (whose group versions
come in upstream's kube-aware order, the first preferred)."""

from __future__ import annotations

from netlab.api.resources import RESOURCES, Resource
from netlab.control.apiserver.customresources import version_order

VERSION = {"major": "1", "minor": "31", "gitVersion": "v1.31.0+netlab", "gitCommit": "netlab",
           "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.22.0", "compiler": "gc",
           "platform": "linux/amd64"}
BUILTIN = {(r.group, r.version) for r in RESOURCES}


def api_versions(server_address: str) -> dict:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}


def groups(served: list[Resource]) -> dict[str, list[str]]:
    """Each group's versions, the preferred first."""
    out: dict[str, list[str]] = {}
    for r in served:
        if r.group and r.version not in out.setdefault(r.group, []):
            out[r.group].append(r.version)
    for g, versions in out.items():
        if not any((g, ver) in BUILTIN for ver in versions):
            versions.sort(key=version_order, reverse=True)
    return out


def group(g: str, served: list[Resource]) -> dict:
    versions = [{"groupVersion": f"{g}/{v}", "version": v} for v in groups(served)[g]]
    return {"name": g, "versions": versions, "preferredVersion": versions[0]}


def group_list(served: list[Resource]) -> dict:
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [group(g, served) for g in groups(served)]}


def serves(group: str, version: str, served: list[Resource]) -> bool:
    return any(r.group == group and r.version == version for r in served)


def resource_list(group: str, version: str, served: list[Resource]) -> dict:
    resources = []
    for r in served:
        if (r.group, r.version) != (group, version):
            continue
        resources.append({"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced, "kind": r.kind,
                          "verbs": list(r.verbs), **({"shortNames": list(r.short_names)} if r.short_names else {}),
                          **({"categories": list(r.categories)} if r.categories else {})})
        for sub in r.subresources:
            entry = {"name": f"{r.plural}/{sub}", "singularName": "", "namespaced": r.namespaced, "kind": r.kind,
                     "verbs": ["get", "patch", "update"]}
            if sub == "scale":
                entry.update(group="autoscaling", version="v1", kind="Scale")
            elif sub == "binding":
                entry.update(kind="Binding", verbs=["create"])
            elif sub == "log":
                entry.update(kind="Pod", verbs=["get"])
            elif sub == "eviction":
                entry.update(group="policy", version="v1", kind="Eviction", verbs=["create"])
            elif sub in ("exec", "attach", "portforward"):  # PodExecOptions, PodAttachOptions, ...
                entry.update(kind={"exec": "PodExecOptions", "attach": "PodAttachOptions",
                                   "portforward": "PodPortForwardOptions"}[sub], verbs=["create", "get"])
            elif sub == "proxy":
                entry.update(kind=f"{r.kind}ProxyOptions", verbs=["create", "delete", "get", "patch", "update"])
            elif sub == "token":
                entry.update(group="authentication.k8s.io", version="v1", kind="TokenRequest", verbs=["create"])
            elif sub == "finalize":
                entry.update(verbs=["update"])
            resources.append(entry)
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{group}/{version}" if group else version,
            "resources": resources}
