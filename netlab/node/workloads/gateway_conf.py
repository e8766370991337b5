"""The nginx configuration netlab's Gateway API controller renders from what gateway_model
resolved: a pure function, tested without nginx (and with `nginx -t`).

    upstream <ns>-<service>-<port> { server <pod ip>:<port>; }     the ready endpoints, directly
    split_clients $request_id $gw_split_m3 { 80% default-v1-80; * default-v2-80; }   weighted backendRefs
    server { listen 80; server_name foo.example.com; ...          one per (listener port, hostname)
        location = /foo { rewrite ^ /_gw/$gw_match_1$uri last; }  a path location: its map picks the match
        location /foo/ { ... }                                     PathPrefix /foo (element-wise)
        location /_gw/m3/ { internal; ...; proxy_pass http://$gw_split_m3; }  one per HTTPRoute match
    }
    map "$request_method|$http_env|$arg_q" $gw_match_1 { ~^GET\\|canary\\|.*$ m3; default 404; }

nginx picks a location by path alone (exact before the longest prefix), so each path location lists,
in a map, every HTTPRoute match whose path covers it, in the spec's precedence (Exact path, the longest
prefix, a method, the most header matches, the most query matches, the oldest route, the rule's order);
the first whose method, headers and query parameters hold names the match's internal location, which
applies its filters and proxies (or redirects). No match: 404, as the spec says. A backendRef that does
not resolve gets its share of requests answered 500, as the spec says; a Service with no ready endpoints
503.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from netlab.node.workloads import nginx_conf
from netlab.node.workloads.gateway_model import Attachment, Backend, Listener, Resolved

INTERNAL = "/_gw"
STATUS_SOCKET = f"unix:{nginx_conf.TEMP}/gateway-%d.sock"  # the servers answering 500 and 503 themselves
INVALID, EMPTY = "gateway-invalid-backend", "gateway-no-endpoints"
STD_HEADERS = [("Host", "$host"), ("X-Real-IP", "$remote_addr"), ("X-Forwarded-For", "$proxy_add_x_forwarded_for"),
               ("X-Forwarded-Host", "$host"), ("X-Forwarded-Port", "$server_port"),
               ("X-Forwarded-Proto", "$scheme")]


@dataclass
class Match:
    id: str
    path_type: str     # Exact, PathPrefix
    path: str          # normalised: a PathPrefix without its trailing slash ("/" stays)
    method: str | None
    headers: list[tuple[str, str, str]]   # (type, name, value)
    queries: list[tuple[str, str, str]]
    order: tuple
    att: Attachment
    raw_path: str = ""

    def precedence(self) -> tuple:
        return (self.path_type != "Exact", -len(self.path), self.method is None, -len(self.headers),
                -len(self.queries), self.order)


@dataclass
class Server:
    port: int
    host: str           # "_": the listener's default server
    https: bool
    cert: str | None
    matches: list[Match] = field(default_factory=list)


def _norm(path_type: str, value: str) -> str:
    return value if path_type == "Exact" else (value.rstrip("/") or "/")


def _covers(prefix: str, path: str) -> bool:
    """A PathPrefix covers a path element-wise (/foo: /foo and /foo/bar, never /foobar)."""
    return prefix == "/" or path == prefix or path.startswith(prefix + "/")


def _var(kind: str, name: str) -> str:
    return ("$http_" if kind == "header" else "$arg_") + re.sub(r"[^a-z0-9_]", "_", name.lower().replace("-", "_"))


def _regex(kind: str, value: str) -> str:
    return f"(?:{value})" if kind == "RegularExpression" else re.escape(value)


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def servers(res: Resolved, certs: dict[str, str]) -> list[Server]:
    """Every (port, hostname) the listeners serve, with the route matches attached there."""
    out: dict[tuple[int, str], Server] = {}

    def server(lst: Listener, host: str) -> Server:
        s = out.get((lst.port, host))
        if s is None:
            cert = certs.get(lst.cert or "") if lst.protocol == "HTTPS" else None
            s = out[(lst.port, host)] = Server(lst.port, host, lst.protocol == "HTTPS", cert)
        return s

    for lst in res.listeners:
        server(lst, "_")
        if lst.hostname:
            server(lst, lst.hostname)
    n = 0
    for att in res.attachments:
        route = att.route
        order = (route["metadata"].get("creationTimestamp") or "", route["metadata"]["namespace"],
                 route["metadata"]["name"], att.rule_index)
        for mi, m in enumerate(att.rule.get("matches") or [{"path": {"type": "PathPrefix", "value": "/"}}]):
            path = m.get("path") or {"type": "PathPrefix", "value": "/"}
            if path.get("type", "PathPrefix") not in ("Exact", "PathPrefix"):
                continue  # RegularExpression paths: not implemented (implementation-specific)
            for host in att.hostnames or ["_"]:
                n += 1
                ptype = path.get("type", "PathPrefix")
                server(att.listener, host).matches.append(Match(
                    f"m{n}", ptype, _norm(ptype, path.get("value", "/")), m.get("method"),
                    [(h.get("type", "Exact"), h["name"], h["value"]) for h in m.get("headers") or []],
                    [(q.get("type", "Exact"), q["name"], q["value"]) for q in m.get("queryParams") or []],
                    (*order, mi), att, path.get("value", "/")))
    return sorted(out.values(), key=lambda s: (s.port, s.host == "_", s.host.startswith("*."), s.host))


def _upstream(b: Backend, services: dict, slices: dict, upstreams: dict) -> str:
    if not b.valid:
        return INVALID
    up = nginx_conf.upstream_of(b.namespace, {"service": {"name": b.name, "port": {"number": b.port}}},
                                services, slices)
    if not up or not up.servers:
        return EMPTY
    upstreams[up.name] = up
    return up.name


def render(res: Resolved, services: list[dict], slices: list[dict], certs: dict[str, str]) -> str:
    """`certs`: namespace/name of a listener's Secret -> the PEM the controller wrote for it."""
    svcs = {(s["metadata"]["namespace"], s["metadata"]["name"]): s for s in services}
    by_svc: dict[tuple[str, str], list[dict]] = {}
    for s in slices:
        by_svc.setdefault((s["metadata"]["namespace"], nginx_conf.service_of(s)), []).append(s)
    upstreams: dict = {}
    maps: list[str] = []
    splits: list[str] = []
    blocks: list[str] = []
    nmap = 0
    for srv in servers(res, certs):
        default = srv.host == "_"
        lines = ["", f"  ## port {srv.port}, " + ("any other host (the listener's default server)" if default
                                                  else f"host {srv.host}"),
                 "  server {", f"    listen {srv.port}{' ssl' if srv.https else ''}{' default_server' if default else ''};",
                 f"    server_name {srv.host};"]
        if srv.https:
            pem = srv.cert or nginx_conf.DEFAULT_CERT
            lines += [f"    ssl_certificate {pem};", f"    ssl_certificate_key {pem};"]
        # the path locations: each exact path, each prefix (exact part and subtree), and "/"
        locs: dict[str, list[Match]] = {"/": []}
        for m in srv.matches:
            if m.path_type == "Exact":
                locs.setdefault(f"= {m.path}", [])
            elif m.path != "/":
                locs.setdefault(f"= {m.path}", [])
                locs.setdefault(f"{m.path}/", [])
        for loc in locs:
            path = loc.removeprefix("= ")
            exact = loc.startswith("= ")
            for m in srv.matches:
                if m.path_type == "Exact":
                    if exact and m.path == path:
                        locs[loc].append(m)
                elif _covers(m.path, path.rstrip("/") or "/"):
                    locs[loc].append(m)
        for loc in sorted(locs, key=lambda k: (-len(k.removeprefix("= ").rstrip("/") or "/"), not k.startswith("= "))):
            cands = sorted(locs[loc], key=Match.precedence)
            lines.append(f"    location {loc} {{")
            target = _pick(cands, maps, nmap)
            nmap += 1
            lines += [f"      rewrite ^ {INTERNAL}/{target}$uri last;", "    }"]
        lines += [f"    location {INTERNAL}/404/ {{ internal; return 404; }}  # no match: 404, as the spec says"]
        for m in srv.matches:
            lines += _action(m, srv, svcs, by_svc, upstreams, splits)
        lines.append("  }")
        blocks += lines
    out = [
        "# nginx.conf rendered by netlab's Gateway API controller (netlab.dev/gateway-controller) from the",
        "# Gateways of its GatewayClasses and the HTTPRoutes attached to them; rewritten, and nginx reloaded,",
        "# whenever they, their Services, endpoints or Secrets change.",
        "daemon off;",
        "worker_processes 1;",
        f"pid {nginx_conf.TEMP}/nginx.pid;",
        "error_log stderr notice;",
        "events { worker_connections 1024; }",
        "",
        "http {",
        "  include /etc/nginx/mime.types;",
        "  default_type text/plain;",
        "  log_format gateway '$remote_addr - [$time_local] \"$request\" $status $body_bytes_sent \"$http_user_agent\" "
        "$request_time [$server_port $host] $upstream_addr $upstream_status';",
        "  access_log /dev/stdout gateway;",
        f"  client_body_temp_path {nginx_conf.TEMP}/client-body;",
        f"  proxy_temp_path {nginx_conf.TEMP}/proxy;",
        f"  fastcgi_temp_path {nginx_conf.TEMP}/fastcgi;",
        f"  uwsgi_temp_path {nginx_conf.TEMP}/uwsgi;",
        f"  scgi_temp_path {nginx_conf.TEMP}/scgi;",
        "  server_names_hash_bucket_size 128;",
        "  map_hash_bucket_size 128;",
        "  ssl_protocols TLSv1.2 TLSv1.3;",
        "  proxy_http_version 1.1;",
        "  proxy_connect_timeout 5s;",
        "  proxy_next_upstream error timeout;",
        "",
        "  # a backendRef that does not resolve: 500; a Service without ready endpoints: 503",
        f"  upstream {INVALID} {{ server {STATUS_SOCKET % 500}; }}",
        f"  upstream {EMPTY} {{ server {STATUS_SOCKET % 503}; }}",
        f"  server {{ listen {STATUS_SOCKET % 500}; access_log off; return 500; }}",
        f"  server {{ listen {STATUS_SOCKET % 503}; access_log off; return 503; }}",
    ]
    for up in upstreams.values():
        out += [f"  upstream {up.name} {{"] + [f"    server {s} max_fails=0 fail_timeout=0;" for s in up.servers] \
            + ["  }"]
    out += maps + splits + blocks + ["}"]
    return "\n".join(out) + "\n"


def _pick(cands: list[Match], maps: list[str], n: int) -> str:
    """The internal location a path location hands a request to: a fixed one, or a map over the
    request's method, headers and query parameters whose first matching line (in precedence)
    names it."""
    if not cands:
        return "404"
    if not (cands[0].method or cands[0].headers or cands[0].queries):
        return cands[0].id  # the first in precedence takes every request
    vars_: list[tuple[str, str]] = []
    for m in cands:
        for kind, items in (("header", m.headers), ("query", m.queries)):
            for _, name, _ in items:
                if (kind, name.lower() if kind == "header" else name) not in vars_:
                    vars_.append((kind, name.lower() if kind == "header" else name))
    source = "|".join(["$request_method"] + [_var(k, nm) for k, nm in vars_])
    lines = [f"  map {_quote(source)} $gw_match_{n} {{"]
    default = "404"
    for m in cands:
        parts = [re.escape(m.method) if m.method else ".*"]
        for kind, nm in vars_:
            items = m.headers if kind == "header" else m.queries
            hit = next((i for i in items if (i[1].lower() if kind == "header" else i[1]) == nm), None)
            parts.append(_regex(hit[0], hit[2]) if hit else ".*")
        if not (m.method or m.headers or m.queries):
            default = m.id
            break
        lines.append(f"    {_quote('~^' + re.escape('|').join(parts) + '$')} {m.id};  # {_describe(m)}")
    lines += [f"    default {default};", "  }"]
    maps += lines
    return f"$gw_match_{n}"


def _describe(m: Match) -> str:
    r = m.att.route["metadata"]
    what = [f"{m.path_type} {m.raw_path}"] + ([m.method] if m.method else []) + \
        [f"header {n}={v}" for _, n, v in m.headers] + [f"query {n}={v}" for _, n, v in m.queries]
    return f"HTTPRoute {r['namespace']}/{r['name']} rule {m.att.rule_index}: " + ", ".join(what)


def _action(m: Match, srv: Server, svcs: dict, slices: dict, upstreams: dict, splits: list[str]) -> list[str]:
    filters = m.att.rule.get("filters") or []
    redirect = next((f["requestRedirect"] for f in filters if f.get("type") == "RequestRedirect"), None)
    rewrite = next((f["urlRewrite"] for f in filters if f.get("type") == "URLRewrite"), None)
    headers = next((f["requestHeaderModifier"] for f in filters if f.get("type") == "RequestHeaderModifier"), None)
    where = f"{INTERNAL}/{m.id}"
    lines = [f"    location {where}/ {{  # {_describe(m)}", "      internal;"]
    path_change = (redirect or rewrite or {}).get("path")
    if path_change and path_change.get("type") == "ReplaceFullPath":
        lines.append(f"      rewrite ^ {_quote(path_change['replaceFullPath'])}{'' if redirect else ' break'};")
    elif path_change and path_change.get("type") == "ReplacePrefixMatch" and m.path_type == "PathPrefix":
        prefix = "" if m.path == "/" else re.escape(m.path)
        repl = path_change.get("replacePrefixMatch", "/").rstrip("/")
        rx, to = (f"^{where}{prefix}/?(.*)$", "/$1") if not repl else (f"^{where}{prefix}(/.*)?$", f"{repl}$1")
        lines.append(f"      rewrite {_quote(rx)} {_quote(to)}{'' if redirect else ' break'};")
    else:
        lines.append(f"      rewrite ^{where}(/.*)$ $1{'' if redirect else ' break'};")
    if redirect:
        listener_scheme = "https" if srv.https else "http"
        scheme = redirect.get("scheme") or listener_scheme
        port = redirect.get("port")
        if port is None:
            port = {"http": 80, "https": 443}.get(scheme, srv.port) if redirect.get("scheme") else srv.port
        host = redirect.get("hostname") or "$host"
        show_port = "" if (scheme, port) in (("http", 80), ("https", 443)) else f":{port}"
        code = redirect.get("statusCode", 302)
        lines.append(f"      return {code} {_quote(f'{scheme}://{host}{show_port}$uri$is_args$args')};")
        return lines + ["    }"]
    set_h = {h["name"].lower(): (h["name"], h["value"]) for h in (headers or {}).get("set") or []}
    add_h = {h["name"].lower(): (h["name"], h["value"]) for h in (headers or {}).get("add") or []}
    remove = {h.lower() for h in (headers or {}).get("remove") or []}
    host_rewrite = (rewrite or {}).get("hostname")
    for name, value in STD_HEADERS:
        if name.lower() in set_h or name.lower() in add_h or name.lower() in remove:
            continue
        lines.append(f"      proxy_set_header {name} {host_rewrite if name == 'Host' and host_rewrite else value};")
    for name, value in set_h.values():
        lines.append(f"      proxy_set_header {name} {_quote(value)};  # RequestHeaderModifier set")
    for name, value in add_h.values():
        var = _var("header", name)
        lines.append(f"      proxy_set_header {name} {_quote(f'{var}${{gw_comma_{var[6:]}}}{value}')};"
                     "  # RequestHeaderModifier add")
        comma = f"  map {var} $gw_comma_{var[6:]} {{ \"\" \"\"; default \",\"; }}"
        if comma not in splits:
            splits.append(comma)
    for name in sorted(remove):
        lines.append(f"      proxy_set_header {name} \"\";  # RequestHeaderModifier remove")
    backends = [b for b in m.att.backends if b.weight > 0]
    if not backends:
        lines.append(f"      proxy_pass http://{INVALID};  # no backendRef with a weight: 500")
        return lines + ["    }"]
    names = [(_upstream(b, svcs, slices, upstreams), b.weight) for b in backends]
    if len(names) == 1:
        lines.append(f"      proxy_pass http://{names[0][0]};")
    else:
        total = sum(w for _, w in names)
        split = [f"  split_clients \"$request_id\" $gw_split_{m.id} {{  # {_describe(m)}: weights "
                 + ", ".join(f"{n}={w}" for n, w in names)]
        for i, (n, w) in enumerate(names):
            share = "*" if i == len(names) - 1 else f"{100 * w / total:.2f}%"
            split.append(f"    {share} {n};")
        splits += split + ["  }"]
        lines.append(f"      proxy_pass http://$gw_split_{m.id};")
    return lines + ["    }"]
