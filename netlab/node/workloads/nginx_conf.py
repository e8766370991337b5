"""The nginx configuration the ingress controller renders, as ingress-nginx renders it from its
template: a pure function of (the Ingresses of its class, Services, EndpointSlices, the TLS
certificates it wrote), so it is tested without nginx.

    upstream <ns>-<service>-<port> { server <pod ip>:<port>; ... }   the ready endpoints, directly
    server { server_name _; listen 80 default_server; listen 443 ssl default_server; ... }
        rules without a host, and the defaultBackend of an Ingress without rules; else 404
    server { server_name foo.bar.com; ... }        one per host, merged over every Ingress naming it
        location = /foo { ... }    Exact /foo, and Prefix /foo's exact part
        location /foo/ { ... }     Prefix /foo (element-wise: /foo and /foo/..., never /foobar)
        location /foo { ... }      ImplementationSpecific /foo (nginx's own prefix match)
        location / { ... }         the Ingress's defaultBackend, or the controller's 404

A path that two rules render alike is the oldest Ingress's, and an Exact path beats a Prefix one
of the same path, as the Ingress spec orders matches; nginx itself takes an exact location before
prefixes and the longest prefix first, so the order is the spec's. A wildcard host `*.foo.com`
matches one DNS label (bar.foo.com, not baz.bar.foo.com), as the spec says, with a regular
expression server_name. A host with TLS redirects plain HTTP to HTTPS (308), as ingress-nginx's
ssl-redirect does; every server answers HTTPS, with the default certificate when none is given.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from netlab.api.endpointslices import service_of, view

TEMP = "/var/lib/nginx"  # Debian nginx's own state directory, the pod's emptyDir there: pid and temporary files
DEFAULT_CERT = "/etc/nginx/ssl/default-fake-certificate.pem"


@dataclass(frozen=True)
class Upstream:
    name: str                 # <namespace>-<service>-<port>, ingress-nginx's proxy_upstream_name
    servers: tuple[str, ...]  # ip:port of each ready endpoint


@dataclass
class Location:
    key: str            # "= /foo", "/foo/", "/foo", "/"
    path: str           # the Ingress's path
    path_type: str
    ingress: str        # namespace/name
    upstream: str | None  # None: answered by `status`
    status: int = 0       # 503: no endpoints, 404: the default backend


@dataclass
class Server:
    host: str                  # "_" for the default server
    ingress: str = ""          # the Ingress that made it (its defaultBackend serves "/")
    locations: dict[str, Location] = field(default_factory=dict)
    cert: str | None = None    # a PEM (certificate and key), when the host has TLS


@dataclass
class Model:
    servers: list[Server]
    upstreams: dict[str, Upstream]


def location_keys(path: str, path_type: str) -> list[str]:
    """The nginx locations a path renders to."""
    path = path or "/"
    if path_type == "Exact":
        return [f"= {path}"]
    if path_type == "Prefix":
        p = path.rstrip("/") or "/"
        return ["/"] if p == "/" else [f"= {p}", f"{p}/"]
    return [path]  # ImplementationSpecific: nginx's prefix match, as ingress-nginx takes it


def _sort_key(loc: Location) -> tuple:
    """Longest path first, an exact location before a prefix one of the same length."""
    bare = loc.key.removeprefix("= ")
    return (-len(bare.rstrip("/") or "/"), not loc.key.startswith("= "), loc.key)


def server_name(host: str) -> str:
    """nginx's server_name for a rule's host: a one-label wildcard becomes a regular expression."""
    if host.startswith("*."):
        return "~^[^.]+" + re.escape(host[1:]).replace("\\-", "-") + "$"
    return host


def host_matches(pattern: str, host: str) -> bool:
    """A TLS host (maybe a wildcard) covers a rule's host."""
    if pattern.startswith("*."):
        return host.count(".") == pattern.count(".") and host.split(".", 1)[-1] == pattern[2:]
    return pattern == host


def upstream_of(ns: str, backend: dict, services: dict, slices: dict) -> Upstream | None:
    """The ready endpoints of a Service backend (the Service port it names, by number or name,
    found in the slices by its name); None for a resource backend."""
    svc_ref = backend.get("service")
    if not svc_ref:
        return None
    port = svc_ref.get("port") or {}
    name = f"{ns}-{svc_ref.get('name')}-{port.get('number') or port.get('name')}"
    svc = services.get((ns, svc_ref.get("name")))
    if svc is None:
        return Upstream(name, ())
    sp = next((p for p in (svc.get("spec") or {}).get("ports") or []
               if (port.get("number") and p.get("port") == port["number"])
               or (port.get("name") and p.get("name") == port["name"])), None)
    if sp is None:
        return Upstream(name, ())
    servers = []
    for s in slices.get((ns, svc_ref["name"]), []):
        es = view(s)
        target = es.port(sp.get("name", ""), sp.get("protocol", "TCP"))
        if target is None or target.port is None:
            continue
        for e in es.endpoints:
            if e.ready:
                servers += [f"{a}:{target.port}" for a in e.addresses]
    return Upstream(name, tuple(sorted(set(servers))))


def build(ingresses: list[dict], services: list[dict], slices: list[dict], certs: dict[tuple[str, str], str]) -> Model:
    """The servers and upstreams of every Ingress (oldest first), with `certs`: (namespace, secret
    name) -> the PEM written for a valid kubernetes.io/tls Secret."""
    svcs = {(s["metadata"]["namespace"], s["metadata"]["name"]): s for s in services}
    by_svc: dict[tuple[str, str], list[dict]] = {}
    for s in slices:
        by_svc.setdefault((s["metadata"]["namespace"], service_of(s)), []).append(s)
    ings = sorted(ingresses, key=lambda i: (i["metadata"].get("creationTimestamp") or "", i["metadata"]["namespace"],
                                            i["metadata"]["name"]))
    upstreams: dict[str, Upstream] = {}
    default = Server("_")
    servers: dict[str, Server] = {}

    def target(ns: str, backend: dict) -> tuple[str | None, int]:
        up = upstream_of(ns, backend or {}, svcs, by_svc)
        if up is None:
            return None, 404  # a resource backend: not something nginx can serve
        upstreams[up.name] = up
        return (up.name, 0) if up.servers else (None, 503)

    # the Ingresses' paths: Exact ones first, so that they win over a Prefix of the same path
    for exact_pass in (True, False):
        for ing in ings:
            ns, key = ing["metadata"]["namespace"], f"{ing['metadata']['namespace']}/{ing['metadata']['name']}"
            for rule in (ing.get("spec") or {}).get("rules") or []:
                host = rule.get("host") or ""
                srv = servers.setdefault(host, Server(host, key)) if host else default
                for p in (rule.get("http") or {}).get("paths") or []:
                    if (p.get("pathType") == "Exact") != exact_pass:
                        continue
                    up, status = target(ns, p.get("backend"))
                    for k in location_keys(p.get("path", "/"), p.get("pathType", "Prefix")):
                        srv.locations.setdefault(k, Location(k, p.get("path", "/"), p["pathType"], key, up, status))
    # "/" where no rule gave one: the defaultBackend of the Ingress that made the server (of an
    # Ingress without rules for the default server), else the controller's 404
    for srv in [default, *servers.values()]:
        if "/" in srv.locations:
            continue
        ing = next((i for i in ings if f"{i['metadata']['namespace']}/{i['metadata']['name']}" == srv.ingress), None) \
            if srv.host != "_" else next((i for i in ings if (i.get("spec") or {}).get("defaultBackend")
                                          and not (i.get("spec") or {}).get("rules")), None)
        backend = ((ing or {}).get("spec") or {}).get("defaultBackend")
        if backend:
            up, status = target(ing["metadata"]["namespace"], backend)
            srv.locations["/"] = Location("/", "/", "defaultBackend", f"{ing['metadata']['namespace']}/"
                                          f"{ing['metadata']['name']}", up, status)
        else:
            srv.locations["/"] = Location("/", "/", "default", "", None, 404)
    # TLS: each host's certificate, from the oldest Ingress that names it
    for ing in ings:
        ns = ing["metadata"]["namespace"]
        for tls in (ing.get("spec") or {}).get("tls") or []:
            cert = certs.get((ns, tls.get("secretName") or ""))
            for pattern in tls.get("hosts") or []:
                for srv in servers.values():
                    if srv.cert is None and host_matches(pattern, srv.host):
                        srv.cert = cert or DEFAULT_CERT
    ordered = sorted(servers.values(), key=lambda s: (s.host.startswith("*."), s.host))
    return Model([default, *ordered], dict(sorted(upstreams.items())))


def _location(loc: Location) -> list[str]:
    where = f"    # {loc.path_type} {loc.path}" + (f" of {loc.ingress}" if loc.ingress else "")
    lines = [where, f"    location {loc.key} {{"]
    if loc.upstream:
        lines += [f'      set $proxy_upstream_name "{loc.upstream}";', f"      proxy_pass http://{loc.upstream};"]
    elif loc.status == 503:
        lines += ['      set $proxy_upstream_name "";', "      return 503;  # the backend has no ready endpoints"]
    else:
        lines += ['      set $proxy_upstream_name "upstream-default-backend";', "      return 404;"]
    return lines + ["    }"]


def render(m: Model) -> str:
    out = [
        "# nginx.conf rendered by netlab's ingress-nginx controller from the Ingresses of its class;",
        "# rewritten (and nginx reloaded) whenever they, their Services, endpoints or Secrets change.",
        "daemon off;",
        "worker_processes 1;",
        f"pid {TEMP}/nginx.pid;",
        "error_log stderr notice;",
        "events { worker_connections 1024; }",
        "",
        "http {",
        "  include /etc/nginx/mime.types;",
        "  default_type text/html;",
        "  log_format upstreaminfo '$remote_addr - $remote_user [$time_local] \"$request\" $status $body_bytes_sent "
        "\"$http_referer\" \"$http_user_agent\" $request_length $request_time [$proxy_upstream_name] $upstream_addr "
        "$upstream_response_length $upstream_response_time $upstream_status';",
        "  access_log /dev/stdout upstreaminfo;",
        f"  client_body_temp_path {TEMP}/client-body;",
        f"  proxy_temp_path {TEMP}/proxy;",
        f"  fastcgi_temp_path {TEMP}/fastcgi;",
        f"  uwsgi_temp_path {TEMP}/uwsgi;",
        f"  scgi_temp_path {TEMP}/scgi;",
        "  server_names_hash_bucket_size 128;",
        "  ssl_protocols TLSv1.2 TLSv1.3;",
        "  proxy_http_version 1.1;",
        "  proxy_set_header Host $host;",
        "  proxy_set_header X-Request-ID $request_id;",
        "  proxy_set_header X-Real-IP $remote_addr;",
        "  proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
        "  proxy_set_header X-Forwarded-Host $host;",
        "  proxy_set_header X-Forwarded-Port $server_port;",
        "  proxy_set_header X-Forwarded-Proto $scheme;",
        "  proxy_set_header X-Scheme $scheme;",
        "  proxy_connect_timeout 5s;",
        "  proxy_next_upstream error timeout;",
        "",
    ]
    for up in m.upstreams.values():
        if up.servers:
            out += [f"  upstream {up.name} {{"] + [f"    server {s} max_fails=0 fail_timeout=0;" for s in up.servers] \
                + ["  }"]
        else:
            out.append(f"  # upstream {up.name}: no ready endpoints")
    for srv in m.servers:
        default = srv.host == "_"
        out += ["", f"  ## server {srv.host}" + (" (the default server)" if default else ""), "  server {",
                f"    server_name {server_name(srv.host)};"]
        flag = " default_server" if default else ""
        out += [f"    listen 80{flag};", f"    listen 443 ssl{flag};",
                f"    ssl_certificate {srv.cert or DEFAULT_CERT};", f"    ssl_certificate_key {srv.cert or DEFAULT_CERT};"]
        if srv.cert and srv.cert != DEFAULT_CERT:
            out.append('    if ($scheme = "http") { return 308 https://$host$request_uri; }  # ssl-redirect')
        for loc in sorted(srv.locations.values(), key=_sort_key):
            out += _location(loc)
        out.append("  }")
    out.append("}")
    return "\n".join(out) + "\n"
