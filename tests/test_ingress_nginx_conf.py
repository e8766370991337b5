"""The ingress controller's nginx configuration, rendered from Ingresses, Services and
EndpointSlices without nginx running: the Ingress spec's matching order (Exact before Prefix,
longest path first, Prefix element-wise), hosts and one-label wildcards, defaultBackend, TLS
per host, endpoints directly; and `nginx -t` accepts what it renders."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from netlab.node.workloads import nginx_conf as nc


def svc(name: str, port: int = 80, port_name: str = "", ns: str = "default") -> dict:
    return {"metadata": {"namespace": ns, "name": name},
            "spec": {"ports": [{"port": port, "name": port_name, "protocol": "TCP"}]}}


def eps(name: str, ips: list[str], port: int = 8080, port_name: str = "", ready: bool = True,
        ns: str = "default") -> dict:
    return {"metadata": {"namespace": ns, "name": f"{name}-x", "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4", "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
            "endpoints": [{"addresses": [ip], "conditions": {"ready": ready}} for ip in ips]}


def ing(name: str, rules=None, default=None, tls=None, created: str = "2024-01-01T00:00:00Z", ns="default") -> dict:
    spec = {}
    if rules is not None:
        spec["rules"] = rules
    if default is not None:
        spec["defaultBackend"] = default
    if tls is not None:
        spec["tls"] = tls
    return {"metadata": {"namespace": ns, "name": name, "creationTimestamp": created}, "spec": spec}


def backend(name: str, port: int = 80) -> dict:
    return {"service": {"name": name, "port": {"number": port}}}


def path(p: str, ptype: str, to: str, port: int = 80) -> dict:
    return {"path": p, "pathType": ptype, "backend": backend(to, port)}


def server(model: nc.Model, host: str) -> nc.Server:
    return next(s for s in model.servers if s.host == host)


def routes(s: nc.Server) -> dict[str, str | int]:
    return {k: loc.upstream or loc.status for k, loc in s.locations.items()}


def test_simple_fanout_routes_each_prefix_to_its_service():
    m = nc.build([ing("simple-fanout-example", rules=[{"host": "foo.bar.com", "http": {"paths": [
        path("/foo", "Prefix", "service1", 4200), path("/bar", "Prefix", "service2", 8080)]}}])],
        [svc("service1", 4200), svc("service2", 8080)], [eps("service1", ["10.244.1.2"], 9376),
                                                         eps("service2", ["10.244.2.3", "10.244.1.4"], 9376)], {})
    assert routes(server(m, "foo.bar.com")) == {
        "= /foo": "default-service1-4200", "/foo/": "default-service1-4200",
        "= /bar": "default-service2-8080", "/bar/": "default-service2-8080", "/": 404}
    assert m.upstreams["default-service2-8080"].servers == ("10.244.1.4:9376", "10.244.2.3:9376")


def test_exact_wins_over_prefix_of_the_same_path_whatever_the_order():
    rules = [{"host": "a.example", "http": {"paths": [path("/foo", "Prefix", "p"), path("/foo", "Exact", "e")]}}]
    m = nc.build([ing("x", rules=rules)], [svc("p"), svc("e")], [eps("p", ["10.0.0.1"]), eps("e", ["10.0.0.2"])], {})
    assert routes(server(m, "a.example")) == {"= /foo": "default-e-80", "/foo/": "default-p-80", "/": 404}


def test_locations_are_rendered_longest_first_exact_first():
    rules = [{"http": {"paths": [path("/", "Prefix", "a"), path("/aaa/bbb", "Prefix", "a"),
                                 path("/aaa", "Exact", "a"), path("/aaa", "ImplementationSpecific", "a")]}}]
    text = nc.render(nc.build([ing("x", rules=rules)], [svc("a")], [eps("a", ["10.0.0.1"])], {}))
    keys = re.findall(r"^    location (.+) \{$", text, re.M)
    assert keys == ["= /aaa/bbb", "/aaa/bbb/", "= /aaa", "/aaa", "/"]


def test_prefix_ignores_a_trailing_slash_and_slash_is_everything():
    assert nc.location_keys("/foo/", "Prefix") == ["= /foo", "/foo/"]
    assert nc.location_keys("/", "Prefix") == ["/"]
    assert nc.location_keys("/foo", "Exact") == ["= /foo"]
    assert nc.location_keys("/foo", "ImplementationSpecific") == ["/foo"]


def test_name_based_virtual_hosting_and_a_rule_without_host_in_the_default_server():
    rules = [{"host": "foo.bar.com", "http": {"paths": [path("/", "Prefix", "service1")]}},
             {"host": "bar.foo.com", "http": {"paths": [path("/", "Prefix", "service2")]}},
             {"http": {"paths": [path("/", "Prefix", "service3")]}}]
    m = nc.build([ing("name-virtual-host-ingress-no-third-host", rules=rules)],
                 [svc("service1"), svc("service2"), svc("service3")],
                 [eps("service1", ["10.0.0.1"]), eps("service2", ["10.0.0.2"]), eps("service3", ["10.0.0.3"])], {})
    assert [s.host for s in m.servers] == ["_", "bar.foo.com", "foo.bar.com"]
    assert routes(server(m, "_")) == {"/": "default-service3-80"}
    assert routes(server(m, "bar.foo.com")) == {"/": "default-service2-80"}


def test_wildcard_host_matches_one_label():
    assert nc.server_name("*.foo.com") == r"~^[^.]+\.foo\.com$"
    pattern = nc.server_name("*.foo-x.com")[1:]
    assert re.match(pattern, "bar.foo-x.com") and not re.match(pattern, "baz.bar.foo-x.com")
    assert not re.match(pattern, "foo-x.com")
    assert nc.host_matches("*.foo.com", "bar.foo.com") and not nc.host_matches("*.foo.com", "a.bar.foo.com")


def test_default_backend_of_an_ingress_without_rules_takes_the_default_server():
    m = nc.build([ing("test-ingress", default=backend("test"))], [svc("test")], [eps("test", ["10.0.0.9"])], {})
    assert routes(server(m, "_")) == {"/": "default-test-80"}


def test_default_backend_serves_what_the_hosts_rules_do_not():
    rules = [{"host": "a.example", "http": {"paths": [path("/api", "Prefix", "api")]}}]
    m = nc.build([ing("x", rules=rules, default=backend("web"))], [svc("api"), svc("web")],
                 [eps("api", ["10.0.0.1"]), eps("web", ["10.0.0.2"])], {})
    assert routes(server(m, "a.example"))["/"] == "default-web-80"


def test_no_ready_endpoints_answers_503_and_not_ready_ones_are_left_out():
    rules = [{"host": "a.example", "http": {"paths": [path("/", "Prefix", "web")]}}]
    m = nc.build([ing("x", rules=rules)], [svc("web")], [eps("web", ["10.0.0.1"], ready=False)], {})
    assert routes(server(m, "a.example")) == {"/": 503}
    assert "return 503;" in nc.render(m)


def test_named_service_port_finds_its_endpoints_by_name():
    rules = [{"http": {"paths": [{"path": "/", "pathType": "Prefix",
                                  "backend": {"service": {"name": "web", "port": {"name": "http"}}}}]}}]
    m = nc.build([ing("x", rules=rules)], [svc("web", 80, "http")], [eps("web", ["10.0.0.1"], 8080, "http")], {})
    assert m.upstreams["default-web-http"].servers == ("10.0.0.1:8080",)


def test_the_oldest_ingress_keeps_a_path_two_claim():
    r = [{"host": "a.example", "http": {"paths": [path("/", "Prefix", "old")]}}]
    r2 = [{"host": "a.example", "http": {"paths": [path("/", "Prefix", "new")]}}]
    m = nc.build([ing("b", rules=r2, created="2024-02-01T00:00:00Z"), ing("a", rules=r, created="2024-01-01T00:00:00Z")],
                 [svc("old"), svc("new")], [eps("old", ["10.0.0.1"]), eps("new", ["10.0.0.2"])], {})
    assert routes(server(m, "a.example")) == {"/": "default-old-80"}


def test_tls_host_gets_its_certificate_and_redirects_http():
    rules = [{"host": "https-example.foo.com", "http": {"paths": [path("/", "Prefix", "service1")]}},
             {"host": "plain.foo.com", "http": {"paths": [path("/", "Prefix", "service1")]}}]
    m = nc.build([ing("tls-example-ingress", rules=rules, tls=[{"hosts": ["https-example.foo.com"],
                                                                 "secretName": "testsecret-tls"}])],
                 [svc("service1")], [eps("service1", ["10.0.0.1"])],
                 {("default", "testsecret-tls"): "/etc/nginx/ssl/default-testsecret-tls.pem"})
    assert server(m, "https-example.foo.com").cert == "/etc/nginx/ssl/default-testsecret-tls.pem"
    assert server(m, "plain.foo.com").cert is None
    text = nc.render(m)
    block = text.split("## server https-example.foo.com")[1].split("## server")[0]
    assert "ssl_certificate /etc/nginx/ssl/default-testsecret-tls.pem;" in block and "return 308" in block
    assert "return 308" not in text.split("## server plain.foo.com")[1]


def test_missing_secret_falls_back_to_the_default_certificate():
    rules = [{"host": "a.example", "http": {"paths": [path("/", "Prefix", "s")]}}]
    m = nc.build([ing("x", rules=rules, tls=[{"hosts": ["a.example"], "secretName": "gone"}])], [svc("s")], [], {})
    assert server(m, "a.example").cert == nc.DEFAULT_CERT


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed (apt-get install nginx)")
def test_nginx_accepts_the_rendered_configuration(tmp_path):
    from netlab.node.workloads.ingress_nginx import fake_certificate

    rules = [{"host": "foo.bar.com", "http": {"paths": [path("/foo", "Prefix", "s1"), path("/foo", "Exact", "s2"),
                                                       path("/x", "ImplementationSpecific", "s1")]}},
             {"host": "*.foo.com", "http": {"paths": [path("/", "Prefix", "s2")]}},
             {"http": {"paths": [path("/", "Prefix", "gone")]}}]
    m = nc.build([ing("a", rules=rules, tls=[{"hosts": ["foo.bar.com"], "secretName": "t"}]),
                  ing("b", default=backend("s1"))], [svc("s1"), svc("s2")],
                 [eps("s1", ["10.0.0.1", "10.0.0.2"]), eps("s2", ["10.0.0.3"])], {("default", "t"): "CERT"})
    cert = tmp_path / "cert.pem"
    fake_certificate(cert)
    text = nc.render(m).replace(nc.TEMP, str(tmp_path)).replace(nc.DEFAULT_CERT, str(cert)).replace("CERT", str(cert))
    conf = tmp_path / "nginx.conf"
    conf.write_text(text)
    r = subprocess.run(["nginx", "-t", "-q", "-e", "stderr", "-c", str(conf)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr + text
