"""The discovery documents kubectl and the clients read first: /version, /api, /apis, each group
and each group-version's resource list, all made from the kinds in netlab/api/resources.py."""

from __future__ import annotations

from netlab.api.resources import GROUPS, RESOURCES

VERSION = {"major": "1", "minor": "31", "gitVersion": "v1.31.0+netlab", "gitCommit": "netlab",
           "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.22.0", "compiler": "gc",
           "platform": "linux/amd64"}


def api_versions(server_address: str) -> dict:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}


def group(g: str) -> dict:
    versions = [{"groupVersion": f"{g}/{v}", "version": v} for v in GROUPS[g]]
    return {"name": g, "versions": versions, "preferredVersion": versions[0]}


def group_list() -> dict:
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [group(g) for g in GROUPS]}


def serves(group: str, version: str) -> bool:
    return any(r.group == group and r.version == version for r in RESOURCES)


def resource_list(group: str, version: str) -> dict:
    resources = []
    for r in RESOURCES:
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
            elif sub == "finalize":
                entry.update(verbs=["update"])
            resources.append(entry)
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{group}/{version}" if group else version,
            "resources": resources}
