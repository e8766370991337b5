"""What netlab's Gateway API controller makes of the objects it watches: which GatewayClasses,
Gateways and HTTPRoutes are its own, which routes attach to which listeners, which references
resolve, and the status conditions the spec defines for each. A pure function of the objects
(resolve()), so it is tested without nginx; gateway_conf.py renders its routes as nginx.

The reasons are the spec's (gateway.networking.k8s.io/v1 godoc of GatewayClass, Gateway,
Listener and Route conditions):
    GatewayClass  Accepted True Accepted
    Gateway       Accepted True Accepted (ListenersNotValid when a listener is not valid: False
                  when none is); Programmed True Programmed, False AddressNotAssigned until its
                  LoadBalancer Service has an address
    listener      Accepted (UnsupportedProtocol), ResolvedRefs (InvalidCertificateRef,
                  RefNotPermitted, InvalidRouteKinds), Conflicted (ProtocolConflict,
                  HostnameConflict), Programmed (Invalid); supportedKinds, attachedRoutes
    HTTPRoute     per parent: Accepted (NotAllowedByListeners, NoMatchingListenerHostname,
                  NoMatchingParent), ResolvedRefs (InvalidKind, RefNotPermitted, BackendNotFound)
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

from netlab.api.selectors import selector_matches

GROUP = "gateway.networking.k8s.io"
HTTP_ROUTE = {"group": GROUP, "kind": "HTTPRoute"}
PROTOCOLS = ("HTTP", "HTTPS")
# GatewayClass status.supportedFeatures: what this controller implements (sorted, as the spec asks)
FEATURES = sorted(["Gateway", "HTTPRoute", "HTTPRouteHostRewrite", "HTTPRouteMethodMatching",
                   "HTTPRoutePathRedirect", "HTTPRoutePathRewrite", "HTTPRoutePortRedirect",
                   "HTTPRouteQueryParamMatching", "HTTPRouteSchemeRedirect", "ReferenceGrant"])


def key(obj: dict) -> str:
    return f"{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}".lstrip("/")


def cond(type_: str, ok: bool, reason: str, message: str = "") -> dict:
    return {"type": type_, "status": "True" if ok else "False", "reason": reason, "message": message}


@dataclass
class Listener:
    gateway: dict
    spec: dict
    conditions: list[dict] = field(default_factory=list)
    supported_kinds: list[dict] = field(default_factory=list)
    attached: int = 0
    cert: str | None = None  # namespace/name of its certificate Secret (HTTPS)
    valid: bool = True

    @property
    def name(self) -> str:
        return self.spec["name"]

    @property
    def port(self) -> int:
        return self.spec["port"]

    @property
    def protocol(self) -> str:
        return self.spec["protocol"]

    @property
    def hostname(self) -> str | None:
        return self.spec.get("hostname") or None


@dataclass
class Backend:
    namespace: str
    name: str
    port: int | None
    weight: int
    valid: bool  # False: requests it would get are answered 500, as the spec says


@dataclass
class Attachment:
    """One rule of an HTTPRoute on one listener, under the hostnames both allow (None: any)."""
    route: dict
    rule_index: int
    rule: dict
    listener: Listener
    hostnames: list[str] | None
    backends: list[Backend]


@dataclass
class Resolved:
    classes: dict[str, dict]                  # GatewayClass name -> its status
    gateways: dict[str, tuple[dict, dict]]    # key -> (Gateway, its status)
    routes: dict[str, tuple[dict, list[dict]]]  # key -> (HTTPRoute, our status.parents entries)
    attachments: list[Attachment]
    listeners: list[Listener]                 # the valid listeners of every Gateway of ours


def intersect(listener: str | None, route_hosts: list[str]) -> list[str] | None:
    """The hostnames a route serves on a listener, as the spec intersects them: None is any host,
    [] is none."""
    if not route_hosts:
        return None if listener is None else [listener]
    if listener is None:
        return list(route_hosts)
    out = []
    for h in route_hosts:
        if h == listener:
            out.append(h)
        elif listener.startswith("*.") and h.endswith(listener[1:]):
            out.append(h)  # a host (or narrower wildcard) under the listener's wildcard
        elif h.startswith("*.") and listener.endswith(h[1:]):
            out.append(listener)  # the listener's host under the route's wildcard
    return sorted(set(out))


def granted(grants: list[dict], from_kind: str, from_ns: str, to_kind: str, to_ns: str, to_name: str,
            to_group: str = "") -> bool:
    """A ReferenceGrant in the target's namespace lets from_kind in from_ns refer to it."""
    for g in grants:
        if g["metadata"]["namespace"] != to_ns:
            continue
        spec = g.get("spec") or {}
        if not any(f.get("group") == GROUP and f.get("kind") == from_kind and f.get("namespace") == from_ns
                   for f in spec.get("from") or []):
            continue
        if any((t.get("group") or "") == to_group and t.get("kind") == to_kind and t.get("name") in (None, "", to_name)
               for t in spec.get("to") or []):
            return True
    return False


def _valid_tls(secret: dict) -> bool:
    data = secret.get("data") or {}
    try:
        crt, k = base64.b64decode(data.get("tls.crt", "")), base64.b64decode(data.get("tls.key", ""))
    except ValueError:
        return False
    return secret.get("type") == "kubernetes.io/tls" and b"CERTIFICATE" in crt and b"PRIVATE KEY" in k


def _listeners(gw: dict, secrets: dict, grants: list[dict], ports: dict[int, tuple[str, str]]) -> list[Listener]:
    ns = gw["metadata"]["namespace"]
    out = []
    specs = (gw.get("spec") or {}).get("listeners") or []
    for spec in specs:
        lst = Listener(gw, spec)
        proto = spec["protocol"]
        # Accepted
        if proto not in PROTOCOLS:
            lst.conditions.append(cond("Accepted", False, "UnsupportedProtocol",
                                       f"protocol {proto} is not supported (HTTP, HTTPS are)"))
            lst.valid = False
        else:
            lst.conditions.append(cond("Accepted", True, "Accepted"))
        # Conflicted: within the Gateway, and against older Gateways on the same data plane
        conflict = None
        for other in specs:
            if other is spec or other["port"] != spec["port"]:
                continue
            if other["protocol"] != proto:
                conflict = ("ProtocolConflict", f"port {spec['port']} is also used with protocol {other['protocol']}")
            elif (other.get("hostname") or "") == (spec.get("hostname") or ""):
                conflict = ("HostnameConflict", f"another listener on port {spec['port']} has the same hostname")
        held = ports.get(spec["port"])
        if conflict is None and held and held[0] != proto and held[1] != key(gw):
            conflict = ("ProtocolConflict", f"port {spec['port']} is used with protocol {held[0]} by Gateway {held[1]}")
        if conflict:
            lst.conditions.append(cond("Conflicted", True, *conflict))
            lst.valid = False
        else:
            lst.conditions.append(cond("Conflicted", False, "NoConflicts"))
        # ResolvedRefs: route kinds, then certificates
        kinds = ((spec.get("allowedRoutes") or {}).get("kinds"))
        wanted = [{"group": k.get("group", GROUP), "kind": k["kind"]} for k in kinds] if kinds else [HTTP_ROUTE]
        lst.supported_kinds = [k for k in wanted if k == HTTP_ROUTE]
        resolved = cond("ResolvedRefs", True, "ResolvedRefs")
        if len(lst.supported_kinds) < len(wanted):
            bad = ", ".join(k["kind"] for k in wanted if k != HTTP_ROUTE)
            resolved = cond("ResolvedRefs", False, "InvalidRouteKinds", f"route kinds not supported: {bad}")
        if proto == "HTTPS" and resolved["status"] == "True":
            tls = spec.get("tls") or {}
            refs = tls.get("certificateRefs") or []
            if (tls.get("mode") or "Terminate") != "Terminate" or not refs:
                resolved = cond("ResolvedRefs", False, "InvalidCertificateRef",
                                "an HTTPS listener needs tls.mode Terminate and a certificateRef")
            for ref in refs[:1]:
                rns = ref.get("namespace") or ns
                if (ref.get("group") or "") != "" or (ref.get("kind") or "Secret") != "Secret":
                    resolved = cond("ResolvedRefs", False, "InvalidCertificateRef",
                                    f"certificateRef {ref.get('kind')} {ref['name']} is not a Secret")
                elif rns != ns and not granted(grants, "Gateway", ns, "Secret", rns, ref["name"]):
                    resolved = cond("ResolvedRefs", False, "RefNotPermitted",
                                    f"no ReferenceGrant in namespace {rns} allows Gateways of {ns} to use Secret "
                                    f"{ref['name']}")
                elif (rns, ref["name"]) not in secrets or not _valid_tls(secrets[(rns, ref["name"])]):
                    resolved = cond("ResolvedRefs", False, "InvalidCertificateRef",
                                    f"Secret {rns}/{ref['name']} does not exist or is not a valid kubernetes.io/tls "
                                    "Secret")
                else:
                    lst.cert = f"{rns}/{ref['name']}"
        lst.conditions.append(resolved)
        if resolved["status"] == "False":
            lst.valid = False
        if lst.valid:
            lst.conditions.append(cond("Programmed", True, "Programmed"))
            ports.setdefault(spec["port"], (proto, key(gw)))
        else:
            lst.conditions.append(cond("Programmed", False, "Invalid", "the listener is not valid"))
        out.append(lst)
    return out


def _allows(lst: Listener, route: dict, namespaces: dict[str, dict]) -> bool:
    """The listener's allowedRoutes let this route's namespace (and kind) attach."""
    if HTTP_ROUTE not in lst.supported_kinds:
        return False
    allowed = ((lst.spec.get("allowedRoutes") or {}).get("namespaces") or {})
    frm = allowed.get("from") or "Same"
    rns = route["metadata"]["namespace"]
    if frm == "All":
        return True
    if frm == "Same":
        return rns == lst.gateway["metadata"]["namespace"]
    if frm == "Selector":
        labels = ((namespaces.get(rns) or {}).get("metadata") or {}).get("labels") or {}
        return selector_matches(allowed.get("selector") or {}, labels)
    return False


def _backends(route: dict, rule: dict, services: dict, grants: list[dict]) -> tuple[list[Backend], dict | None]:
    """The rule's backendRefs, and the first failed ResolvedRefs condition among them."""
    ns = route["metadata"]["namespace"]
    out, failed = [], None
    for ref in rule.get("backendRefs") or []:
        bns = ref.get("namespace") or ns
        problem = None
        if (ref.get("group") or "") != "" or (ref.get("kind") or "Service") != "Service":
            problem = cond("ResolvedRefs", False, "InvalidKind",
                           f"backendRef {ref.get('group') or 'core'}/{ref.get('kind')} {ref['name']} is not a Service")
        elif bns != ns and not granted(grants, "HTTPRoute", ns, "Service", bns, ref["name"]):
            problem = cond("ResolvedRefs", False, "RefNotPermitted",
                           f"no ReferenceGrant in namespace {bns} allows HTTPRoutes of {ns} to use Service {ref['name']}")
        elif (bns, ref["name"]) not in services:
            problem = cond("ResolvedRefs", False, "BackendNotFound", f"Service {bns}/{ref['name']} not found")
        elif not any(p.get("port") == ref.get("port")
                     for p in (services[(bns, ref["name"])].get("spec") or {}).get("ports") or []):
            problem = cond("ResolvedRefs", False, "BackendNotFound",
                           f"Service {bns}/{ref['name']} has no port {ref.get('port')}")
        failed = failed or problem
        out.append(Backend(bns, ref["name"], ref.get("port"), ref.get("weight", 1), problem is None))
    return out, failed


def resolve(controller: str, classes: list[dict], gateways: list[dict], routes: list[dict], services: list[dict],
            secrets: list[dict], grants: list[dict], namespaces: list[dict], address: str | None) -> Resolved:
    ours = {c["metadata"]["name"]: c for c in classes if (c.get("spec") or {}).get("controllerName") == controller}
    svcs = {(s["metadata"]["namespace"], s["metadata"]["name"]): s for s in services}
    secs = {(s["metadata"]["namespace"], s["metadata"]["name"]): s for s in secrets}
    nss = {n["metadata"]["name"]: n for n in namespaces}
    oldest = lambda o: (o["metadata"].get("creationTimestamp") or "", key(o))  # noqa: E731
    gws = sorted((g for g in gateways if (g.get("spec") or {}).get("gatewayClassName") in ours), key=oldest)
    out = Resolved({n: {"conditions": [cond("Accepted", True, "Accepted")],
                        "supportedFeatures": [{"name": f} for f in FEATURES]} for n in ours}, {}, {}, [], [])
    ports: dict[int, tuple[str, str]] = {}
    by_gw: dict[str, list[Listener]] = {}
    for gw in gws:
        lsts = _listeners(gw, secs, grants, ports)
        by_gw[key(gw)] = lsts
        out.listeners += [lst for lst in lsts if lst.valid]
    for route in sorted(routes, key=oldest):
        parents = []
        for ref in (route.get("spec") or {}).get("parentRefs") or []:
            if (ref.get("group") or GROUP) != GROUP or (ref.get("kind") or "Gateway") != "Gateway":
                continue
            gkey = f"{ref.get('namespace') or route['metadata']['namespace']}/{ref['name']}"
            if gkey not in by_gw:
                continue  # not a Gateway of ours: its controller writes this parent's status
            entry = {"parentRef": ref, "controllerName": controller, "conditions": []}
            parents.append(entry)
            cands = [lst for lst in by_gw[gkey] if lst.valid
                     and ref.get("sectionName") in (None, lst.name) and ref.get("port") in (None, lst.port)]
            if not cands:
                entry["conditions"].append(cond("Accepted", False, "NoMatchingParent",
                                                f"Gateway {gkey} has no valid listener "
                                                + (f"named {ref['sectionName']}" if ref.get("sectionName") else "")
                                                + (f" on port {ref['port']}" if ref.get("port") else "")))
            else:
                allowed = [lst for lst in cands if _allows(lst, route, nss)]
                hosted = [(lst, intersect(lst.hostname, (route.get("spec") or {}).get("hostnames") or []))
                          for lst in allowed]
                hosted = [(lst, h) for lst, h in hosted if h is None or h]
                if not allowed:
                    entry["conditions"].append(cond("Accepted", False, "NotAllowedByListeners",
                                                    "no listener of the Gateway allows this route (allowedRoutes)"))
                elif not hosted:
                    entry["conditions"].append(cond("Accepted", False, "NoMatchingListenerHostname",
                                                    "no hostname of the route matches a listener's hostname"))
                else:
                    entry["conditions"].append(cond("Accepted", True, "Accepted"))
            failed = None
            rules = []
            for i, rule in enumerate((route.get("spec") or {}).get("rules") or []):
                backends, bad = _backends(route, rule, svcs, grants)
                failed = failed or bad
                rules.append((i, rule, backends))
            entry["conditions"].append(failed or cond("ResolvedRefs", True, "ResolvedRefs"))
            if entry["conditions"][0]["status"] == "True":
                for lst, hosts in hosted:
                    lst.attached += 1
                    out.attachments += [Attachment(route, i, rule, lst, hosts, b) for i, rule, b in rules]
        if parents:
            out.routes[key(route)] = (route, parents)
    for gw in gws:
        lsts = by_gw[key(gw)]
        valid = [lst for lst in lsts if lst.valid]
        if len(valid) == len(lsts):
            accepted = cond("Accepted", True, "Accepted")
        else:
            accepted = cond("Accepted", bool(valid), "ListenersNotValid", "some listeners are not valid"
                            if valid else "no listener is valid")
        if not valid:
            programmed = cond("Programmed", False, "Invalid", "no listener is valid")
        elif address:
            programmed = cond("Programmed", True, "Programmed")
        else:
            programmed = cond("Programmed", False, "AddressNotAssigned",
                              "the controller's LoadBalancer Service has no address yet")
        status = {"conditions": [accepted, programmed],
                  "listeners": [{"name": lst.name, "supportedKinds": lst.supported_kinds, "attachedRoutes": lst.attached,
                                 "conditions": lst.conditions} for lst in lsts]}
        if address:
            status["addresses"] = [{"type": "IPAddress", "value": address}]
        out.gateways[key(gw)] = (gw, status)
    return out
