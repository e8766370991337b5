"""The Gateway API controller without a cluster: what gateway_model resolves (attachment, hostnames,
allowedRoutes, conflicts, references, the spec's reasons) and what gateway_conf renders (the spec's
match precedence, weighted splits, filters), checked by `nginx -t`. tests/test_gateway_lab.py runs the
same from the outside of a lab."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from netlab.node.workloads import gateway_conf as gc
from netlab.node.workloads import gateway_model as gm

CTL = "netlab.dev/gateway-controller"
CLASS = {"metadata": {"name": "netlab"}, "spec": {"controllerName": CTL}}


def svc(name: str, ns: str = "default") -> dict:
    return {"metadata": {"namespace": ns, "name": name}, "spec": {"ports": [{"port": 80, "protocol": "TCP"}]}}


def eps(name: str, ip: str, ns: str = "default") -> dict:
    return {"metadata": {"namespace": ns, "name": f"{name}-x", "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4", "ports": [{"port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": True}}]}


def gateway(*listeners: dict, name: str = "gw", created: str = "2024-01-01T00:00:00Z") -> dict:
    return {"metadata": {"namespace": "default", "name": name, "creationTimestamp": created, "generation": 1},
            "spec": {"gatewayClassName": "netlab", "listeners": list(listeners)}}


def route(name: str, rules: list[dict], hostnames=(), ns: str = "default", parent: dict | None = None,
          created: str = "2024-01-01T00:00:00Z") -> dict:
    return {"metadata": {"namespace": ns, "name": name, "creationTimestamp": created},
            "spec": {"parentRefs": [parent or {"name": "gw", "namespace": "default"}], "hostnames": list(hostnames),
                     "rules": rules}}


HTTP = {"name": "http", "port": 80, "protocol": "HTTP"}


def resolve(gws, routes, services=(), namespaces=(), grants=(), secrets=()) -> gm.Resolved:
    return gm.resolve(CTL, [CLASS], list(gws), list(routes), list(services), list(secrets), list(grants),
                      list(namespaces), "172.18.0.200")


def conds(entry: dict) -> dict:
    return {c["type"]: (c["status"], c["reason"]) for c in entry["conditions"]}


def test_hostname_intersection_follows_the_spec():
    assert gm.intersect(None, []) is None
    assert gm.intersect("*.example.com", []) == ["*.example.com"]
    assert gm.intersect("*.example.com", ["foo.example.com", "a.b.example.com", "example.com"]) == \
        ["a.b.example.com", "foo.example.com"]
    assert gm.intersect("foo.example.com", ["*.example.com"]) == ["foo.example.com"]
    assert gm.intersect("foo.example.com", ["bar.example.com"]) == []


def test_attachment_reasons():
    lst = dict(HTTP, hostname="foo.example.com")
    other = dict(HTTP, name="other", port=8080, allowedRoutes={"namespaces": {"from": "Selector", "selector": {
        "matchLabels": {"gateway": "yes"}}}})
    res = resolve([gateway(lst, other)], [
        route("ok", [{}], ["foo.example.com"]),
        route("host", [{}], ["bar.example.com"]),
        route("ns", [{}], ns="team", parent={"name": "gw", "namespace": "default", "sectionName": "other"}),
        route("ns-ok", [{}], ns="labelled", parent={"name": "gw", "namespace": "default", "sectionName": "other"}),
        route("section", [{}], parent={"name": "gw", "namespace": "default", "sectionName": "nope"}),
        route("someone-elses", [{}], parent={"name": "theirs"})],
        namespaces=[{"metadata": {"name": "team"}}, {"metadata": {"name": "labelled", "labels": {"gateway": "yes"}}}])
    reasons = {k.split("/")[1]: conds(p[0])["Accepted"] for k, (_, p) in res.routes.items()}
    assert reasons == {"ok": ("True", "Accepted"), "host": ("False", "NoMatchingListenerHostname"),
                       "ns": ("False", "NotAllowedByListeners"), "ns-ok": ("True", "Accepted"),
                       "section": ("False", "NoMatchingParent")}  # a parent not ours gets no status from us
    _, status = res.gateways["default/gw"]
    assert [(x["name"], x["attachedRoutes"]) for x in status["listeners"]] == [("http", 1), ("other", 1)]


def test_listener_conditions():
    res = resolve([gateway(HTTP, dict(HTTP, name="dup"), {"name": "tcp", "port": 9000, "protocol": "TCP"},
                           {"name": "tls", "port": 443, "protocol": "HTTPS", "tls": {"certificateRefs": [
                               {"name": "missing"}]}},
                           {"name": "kinds", "port": 81, "protocol": "HTTP", "allowedRoutes": {"kinds": [
                               {"kind": "TCPRoute"}]}})], [])
    _, status = res.gateways["default/gw"]
    got = {x["name"]: conds(x) for x in status["listeners"]}
    assert got["http"]["Conflicted"] == ("True", "HostnameConflict")
    assert got["tcp"]["Accepted"] == ("False", "UnsupportedProtocol")
    assert got["tls"]["ResolvedRefs"] == ("False", "InvalidCertificateRef")
    assert got["kinds"]["ResolvedRefs"] == ("False", "InvalidRouteKinds")
    assert all(c["Programmed"] == ("False", "Invalid") for c in got.values())
    assert conds(status)["Accepted"] == ("False", "ListenersNotValid")
    assert conds(status)["Programmed"] == ("False", "Invalid")


def test_backend_reasons_and_reference_grants():
    rules = lambda ref: [{"backendRefs": [dict(ref, port=80)]}]  # noqa: E731
    routes = [route("missing", rules({"name": "nope"})), route("kind", rules({"name": "v1", "kind": "ConfigMap"})),
              route("cross", rules({"name": "v1", "namespace": "other"}))]
    services = [svc("v1"), svc("v1", "other")]
    res = resolve([gateway(HTTP)], routes, services)
    reasons = {k.split("/")[1]: conds(p[0])["ResolvedRefs"] for k, (_, p) in res.routes.items()}
    assert reasons == {"missing": ("False", "BackendNotFound"), "kind": ("False", "InvalidKind"),
                       "cross": ("False", "RefNotPermitted")}
    grant = {"metadata": {"namespace": "other", "name": "g"}, "spec": {
        "from": [{"group": gm.GROUP, "kind": "HTTPRoute", "namespace": "default"}], "to": [{"group": "", "kind": "Service"}]}}
    res = resolve([gateway(HTTP)], routes[2:], services, grants=[grant])
    assert conds(res.routes["default/cross"][1][0])["ResolvedRefs"] == ("True", "ResolvedRefs")


SERVICES = (svc("v1"), svc("v2"))
SLICES = (eps("v1", "10.0.0.1"), eps("v2", "10.0.0.2"))


def rendered(routes, services=SERVICES, slices=SLICES) -> str:
    return gc.render(resolve([gateway(HTTP)], routes, services), list(services), list(slices), {})


def test_match_precedence_in_each_paths_map():
    """Exact path, then the longest prefix, then a method, then more headers, then more query params,
    then the oldest route: the order of the map's lines, the first that holds winning."""
    text = rendered([
        route("young", [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}, "headers": [
            {"name": "a", "value": "1"}]}], "backendRefs": [{"name": "v1", "port": 80}]}],
            created="2025-01-01T00:00:00Z"),
        route("old", [
            {"matches": [{"path": {"type": "PathPrefix", "value": "/"}, "headers": [{"name": "a", "value": "1"}]}],
             "backendRefs": [{"name": "v2", "port": 80}]},
            {"matches": [{"path": {"type": "PathPrefix", "value": "/"}, "queryParams": [{"name": "q", "value": "x"}]}],
             "backendRefs": [{"name": "v2", "port": 80}]},
            {"matches": [{"path": {"type": "PathPrefix", "value": "/"}, "headers": [{"name": "a", "value": "1"},
                                                                               {"name": "b", "value": "2"}]}],
             "backendRefs": [{"name": "v2", "port": 80}]},
            {"matches": [{"path": {"type": "PathPrefix", "value": "/"}, "method": "POST"}],
             "backendRefs": [{"name": "v2", "port": 80}]},
            {"matches": [{"path": {"type": "PathPrefix", "value": "/api"}}], "backendRefs": [{"name": "v1", "port": 80}]},
        ])])
    root = re.search(r'map "[^"]*" (\$gw_match_\d+) \{\n((?:    .*\n)*?)    default (\w+);', text.split("location / {")[0])
    comments = [line.split("# ")[1] for line in root.group(2).splitlines()]
    assert comments == [
        "HTTPRoute default/old rule 3: PathPrefix /, POST",
        "HTTPRoute default/old rule 2: PathPrefix /, header a=1, header b=2",
        "HTTPRoute default/old rule 0: PathPrefix /, header a=1",
        "HTTPRoute default/young rule 0: PathPrefix /, header a=1",
        "HTTPRoute default/old rule 1: PathPrefix /, query q=x"]
    assert root.group(3) == "404"  # nothing else on "/": no match is 404
    # /api: its own location, element-wise (= /api and /api/), taking the prefix without conditions
    assert "location = /api {" in text and "location /api/ {" in text


def test_weights_filters_and_nginx_accepts_it(tmp_path):
    text = rendered([route("r", [
        {"backendRefs": [{"name": "v1", "port": 80, "weight": 3}, {"name": "v2", "port": 80, "weight": 1},
                         {"name": "gone", "port": 80, "weight": 1}, {"name": "v2", "port": 80, "weight": 0}]},
        {"matches": [{"path": {"type": "PathPrefix", "value": "/x"}}], "filters": [
            {"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "Host", "value": "h"}],
                                                                        "add": [{"name": "X-A", "value": "1"}],
                                                                        "remove": ["X-B"]}},
            {"type": "URLRewrite", "urlRewrite": {"hostname": "rewritten.example", "path": {
                "type": "ReplacePrefixMatch", "replacePrefixMatch": "/y"}}}],
         "backendRefs": [{"name": "v1", "port": 80}]},
        {"matches": [{"path": {"type": "Exact", "value": "/r"}}], "filters": [
            {"type": "RequestRedirect", "requestRedirect": {"port": 8443, "path": {
                "type": "ReplaceFullPath", "replaceFullPath": "/new"}}}]},
        {"matches": [{"path": {"type": "Exact", "value": "/empty"}}]},
    ])])
    split = re.search(r"split_clients[^\n]*\n((?:    .*\n)+)  }", text).group(1).split()
    assert split == ["60.00%", "default-v1-80;", "20.00%", "default-v2-80;", "*", "gateway-invalid-backend;"]
    assert 'proxy_set_header Host "h";' in text and "proxy_set_header X-A \"$http_x_a${gw_comma_x_a}1\";" in text
    assert 'rewrite "^/_gw/m2/x(/.*)?$" "/y$1" break;' in text
    assert 'return 302 "http://$host:8443$uri$is_args$args";' in text  # no scheme: the listener's, port kept
    assert "proxy_pass http://gateway-invalid-backend;  # no backendRef with a weight: 500" in text
    if shutil.which("nginx") is None:
        pytest.skip("nginx is not installed")
    conf = tmp_path / "nginx.conf"
    conf.write_text(text)
    r = subprocess.run(["nginx", "-t", "-q", "-e", "stderr", "-c", str(conf)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
