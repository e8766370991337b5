"""The image catalog without a lab: which program an image and a container's command select
(argv_for), and agnhost's subcommands as upstream's tests use them, each run as the container's
process would be (argv_for's command line) in a network namespace of its own (only loopback)."""

from __future__ import annotations

import os
import shlex
import subprocess

import pytest

from netlab.node.workloads import UnknownImage, argv_for, builtin_args

AGNHOST = "registry.k8s.io/e2e-test-images/agnhost:2.53"


def program(image: str, command=None, args=None) -> list[str] | None:
    return builtin_args(argv_for(image, command, args))


def test_images_pick_their_programs():
    assert program(AGNHOST) == ["agnhost"]  # no arguments: agnhost pauses
    assert program(AGNHOST, ["/agnhost", "netexec"], ["--http-port=80"]) == [
        "agnhost", "--entrypoint=/agnhost", "netexec", "--http-port=80"]
    assert program("registry.k8s.io/serve_hostname") == ["serve-hostname"]
    assert program("docker.io/redis:6.0.5") == ["redis"]
    assert program("redis:5.0.4", ["redis-server", "/redis-master/redis.conf"]) == [
        "redis", "--entrypoint=redis-server", "/redis-master/redis.conf"]
    assert program("us-docker.pkg.dev/google-samples/containers/gke/gb-redis-follower:v2") == ["redis-follower"]
    assert program("mysql:5.6") == program("mariadb:10") == ["mysql"]
    assert program("gcr.io/google-samples/hello-app:2.0") == ["hello-app:2.0"]
    assert program("registry.k8s.io/liveness", None, ["/server"]) == ["liveness", "/server"]
    assert program("registry.k8s.io/nginx-slim:0.24") == ["nginx"]
    # a command that is not the image's own program runs with the host's tools
    assert argv_for("mysql:5.6", ["mysql", "-h", "db"], None) == ["mysql", "-h", "db"]
    assert argv_for("redis", ["redis-cli", "ping"], None) == ["redis-cli", "ping"]
    assert program("vish/stress", None, ["-cpus", "2"]) == ["vish-stress", "-cpus", "2"]
    assert argv_for("polinux/stress", ["stress"], ["--vm", "1"]) == ["stress", "--vm", "1"]  # Debian's
    assert argv_for("radial/busyboxplus:curl", None, None) == ["sh"]
    assert argv_for("docker.io/library/bash:5", None, ["-c", "exit 3"]) == ["bash", "-c", "exit 3"]
    assert argv_for("curlimages/curl", None, ["-s", "web"]) == ["curl", "-s", "web"]
    assert argv_for("perl", ["perl", "-Mbignum=bpi", "-wle", "print bpi(2000)"], None)[0] == "perl"
    assert argv_for("registry.k8s.io/e2e-test-images/jessie-dnsutils:1.3", None, None) == ["bash"]
    assert argv_for("python:3.11", ["python", "-c", "print(1)"], None) == ["python3", "-c", "print(1)"]
    assert argv_for("registry.k8s.io/etcd:3.5.1-0", ["/usr/local/bin/etcd", "--data-dir", "/d"], None)[0] == "etcd"
    with pytest.raises(UnknownImage, match=r'image "example.com/mystery:1" is not in netlab\'s catalog \(.*redis'):
        argv_for("example.com/mystery:1", None, None)


def in_netns(servers: list[list[str]], client: str, ports: tuple = (), timeout: float = 30,
             env: dict | None = None) -> subprocess.CompletedProcess:
    """Start `servers` (argv_for command lines) in a new network namespace, wait until each of
    `ports` answers (a TCP port, or "udp/N"), then run the shell `client` there; the servers are
    stopped after it."""
    starts = "".join(f"{shlex.join(s)} >>/tmp/.nlt-images-$$ 2>&1 & pids=\"$pids $!\"; " for s in servers)
    probes = "".join(
        f"i=0; until {_probe(p)} || [ $i -ge 200 ]; do sleep 0.05; i=$((i+1)); done; " for p in ports)
    script = (f"ip link set lo up; {starts} {probes} {client}; rc=$?; kill $pids; wait; "
              "cat /tmp/.nlt-images-$$ >&2; rm -f /tmp/.nlt-images-$$; exit $rc")
    return subprocess.run(["unshare", "--net", "--", "sh", "-c", script], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "SERVE_PORT_9001": "porter-tcp",
                                                "SERVE_UDP_PORT_9002": "porter-udp", **(env or {})})


def _probe(port) -> str:
    if str(port).startswith("udp/"):
        return f"echo x | nc -u -w 1 127.0.0.1 {port[4:]} | grep -q ."
    return f"nc -z 127.0.0.1 {port}"


root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a network namespace")


@root
def test_netexec_answers_malformed_http_with_400():
    r = in_netns([argv_for(AGNHOST, None, ["netexec", "--http-port=8080", "--udp-port=8081"])],
                 "echo hostName | nc -q 2 127.0.0.1 8080; echo; curl -s 127.0.0.1:8080/hostname; echo;"
                 "echo hostname | nc -u -w 1 127.0.0.1 8081", ports=(8080, "udp/8081"))
    lines = r.stdout.splitlines()
    assert lines[0] == "HTTP/1.1 400 Bad Request", r
    assert lines[-3:] == ["400 Bad Request", os.uname().nodename, os.uname().nodename], r


@root
def test_serve_hostname_tcp_udp_http_and_its_flag_check():
    host = os.uname().nodename
    r = in_netns([argv_for(AGNHOST, ["/agnhost"], ["serve-hostname", "--tcp", "--http=false", "--port=7001"]),
                  argv_for(AGNHOST, None, ["serve-hostname", "--udp", "--http=false", "--port", "7002"]),
                  argv_for("registry.k8s.io/serve_hostname:1.1", None, None)],
                 "nc -q 1 127.0.0.1 7001 </dev/null; echo; echo x | nc -u -w 1 127.0.0.1 7002; echo;"
                 "curl -s 127.0.0.1:9376", ports=("udp/7002", 9376))
    assert r.stdout.splitlines() == [host, host, host], r
    assert "Serving on port 7001." in r.stderr and "TCP request from 127.0.0.1:" in r.stderr
    both = subprocess.run(argv_for(AGNHOST, None, ["serve-hostname", "--tcp"]), capture_output=True, text=True,
                          timeout=10)
    assert both.returncode == 1 and "Can't server TCP/UDP mode and HTTP mode at the same time" in both.stderr


@root
def test_porter_test_webserver_and_liveness():
    r = in_netns([argv_for(AGNHOST, None, ["porter"]), argv_for(AGNHOST, None, ["test-webserver", "--port=7080"]),
                  argv_for(AGNHOST, None, ["liveness"])],
                 "curl -s 127.0.0.1:9001/any; echo; echo q | nc -u -w 1 127.0.0.1 9002; echo;"
                 "curl -s 127.0.0.1:7080/etc/hostname; curl -s -o /dev/null -w '%{http_code}\\n' 127.0.0.1:7080/nope;"
                 "curl -s -w ' %{http_code}\\n' 127.0.0.1:8080/healthz;"
                 "curl -s -o /dev/null -w '%{http_code} %{redirect_url}\\n' '127.0.0.1:8080/redirect?loc=/x'",
                 ports=(9001, "udp/9002", 7080, 8080))
    with open("/etc/hostname") as fh:
        hostname_file = fh.read()
    assert r.stdout == f"porter-tcp\nporter-udp\n{hostname_file}404\nok 200\n302 http://127.0.0.1:8080/x\n", r


def agnhost(*args: str, timeout: float = 10) -> subprocess.CompletedProcess:
    return subprocess.run(argv_for(AGNHOST, None, list(args)), capture_output=True, text=True, timeout=timeout)


def test_connect_reports_upstreams_error_prefixes():
    assert agnhost("connect", "127.0.0.1").stderr.startswith("UNKNOWN: ")
    assert agnhost("connect", "no-such-host.invalid:80").stderr.startswith("DNS: ")
    r = subprocess.run(["unshare", "--net", "--", "sh", "-c", "ip link set lo up; " + shlex.join(
        argv_for(AGNHOST, None, ["connect", "--timeout=1s", "127.0.0.1:1"]))], capture_output=True, text=True,
        timeout=10) if os.geteuid() == 0 else None
    if r is not None:
        assert (r.returncode, r.stderr) == (1, "REFUSED\n")


def test_dns_lists_entrypoint_tester_and_pause():
    with open("/etc/resolv.conf") as fh:
        words = [line.split() for line in fh]
    assert agnhost("dns-suffix").stdout == ",".join(w for line in words if line[:1] == ["search"]
                                                      for w in line[1:]) + "\n"
    assert agnhost("dns-server-list").stdout == ",".join(w for line in words if line[:1] == ["nameserver"]
                                                           for w in line[1:]) + "\n"
    assert agnhost("entrypoint-tester", "foo", "bar").stdout == "[/agnhost entrypoint-tester foo bar]\n"
    # with no arguments agnhost is `pause`: it waits, and a SIGTERM ends it with 0
    p = subprocess.Popen(argv_for(AGNHOST, None, None), stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline() == "Paused\n"
        p.terminate()
        assert p.wait(5) == 0
    finally:
        p.kill()


def test_mounttest_prints_as_upstream(tmp_path):
    new = tmp_path / "new"
    r = agnhost("mounttest", f"--fs_type={tmp_path}", f"--new_file_0644={new}", f"--file_perm={new}",
                f"--file_mode={tmp_path}", f"--file_owner={new}")
    st = os.stat(new)
    assert r.returncode == 0, r
    lines = r.stdout.splitlines()
    assert lines[0].startswith(f'mount type of "{tmp_path}": ')
    assert lines[1:] == [f'content of file "{new}": mount-tester new file', "",
                         f'mode of file "{tmp_path}": d' + _perm(os.stat(tmp_path).st_mode),
                         f'perms of file "{new}": -rw-r--r--',
                         f'owner UID of "{new}": {st.st_uid}', f'owner GID of "{new}": {st.st_gid}']
    assert agnhost("mounttest", f"--file_content={tmp_path}/absent").returncode == 1


def _perm(mode: int) -> str:
    return "".join(c if mode & (1 << (8 - i)) else "-" for i, c in enumerate("rwxrwxrwx"))


@root
def test_sample_apps_answer_as_their_images():
    host = os.uname().nodename
    r = in_netns([argv_for("gcr.io/google-samples/hello-app:2.0", None, None),
                  argv_for("gcr.io/google-samples/hello-go-gke:1.0", None, None)],
                 "curl -s 127.0.0.1:8080; curl -s 127.0.0.1:80", ports=(8080, 80))
    assert r.stdout == f"Hello, world!\nVersion: 2.0.0\nHostname: {host}\n{{\"message\":\"Hello\"}}\n", r
    r = in_netns([argv_for("gcr.io/google-samples/node-hello:1.0", None, None)], "curl -s 127.0.0.1:8080", ports=(8080,))
    assert r.stdout == "Hello Kubernetes!", r
    r = in_netns([argv_for("registry.k8s.io/hpa-example", None, None)], "curl -s 127.0.0.1", ports=(80,))
    assert r.stdout == "OK!", r
    r = in_netns([argv_for("registry.k8s.io/goproxy:0.1", None, None),
                  argv_for(AGNHOST, None, ["netexec", "--http-port=7080", "--udp-port=-1"])],
                 "curl -s -x http://127.0.0.1:8080 http://127.0.0.1:7080/hostname; echo;"
                 "curl -s http://127.0.0.1:8080/", ports=(8080, 7080))
    assert r.stdout == f"{host}\nThis is a proxy server. Does not respond to non-proxy requests.\n", r
    r = in_netns([argv_for("registry.k8s.io/echoserver:1.10", None, None)], "curl -s '127.0.0.1:8080/x?y=1'",
                 ports=(8080,))
    for line in (f"Hostname: {host}", "\tclient_address=127.0.0.1", "\treal path=/x", "\tquery=y=1",
                 "\thost=127.0.0.1:8080", "\t-no body in request-"):
        assert line in r.stdout.splitlines(), r


def test_docs_list_the_catalog():
    """docs/images.md's table is the catalog: every image in it, in its order."""
    from pathlib import Path

    from netlab.node.workloads import CATALOG
    doc = (Path(__file__).parent.parent / "docs" / "images.md").read_text()
    rows = [line.split("|")[1].strip().strip("`") for line in doc.split("| image | what runs |")[1].split("\n\n")[0]
            .splitlines()[2:]]
    assert rows == list(CATALOG)


@root
def test_regression_74839_injects_an_out_of_window_packet():
    """The boom server answers an established connection with a PSH packet far outside the
    client's window, carrying "boom!!!" (what upstream's conntrack test has kube-proxy drop)."""
    client = ("(timeout 5 tcpdump -l -n -i lo -c 1 -A 'src port 9000 and tcp[tcpflags] & tcp-push != 0' "
              "2>/dev/null &) ; sleep 1; python3 -c 'import socket, time; s = socket.create_connection("
              "(\"127.0.0.1\", 9000)); time.sleep(1.5)'; sleep 0.5")
    r = in_netns([argv_for("registry.k8s.io/e2e-test-images/regression-issue-74839:1.2", None, None)], client,
                 ports=(9000,), env={"POD_IP": "127.0.0.1"})
    assert "boom!!!" in r.stdout, r
    assert "connection established" in r.stderr and "boom packet injected" in r.stderr, r


def test_vish_stress_holds_its_memory():
    p = subprocess.Popen(argv_for("vish/stress", None, ["-mem-total", "20Mi", "-mem-alloc-size", "1Mi",
                                                        "-mem-alloc-sleep", "1ms"]),
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for line in p.stderr:
            if 'Allocated "20Mi" memory' in line:
                break
        with open(f"/proc/{p.pid}/status") as fh:
            rss = next(int(x.split()[1]) for x in fh if x.startswith("VmRSS:"))
        assert rss > 20 * 1024
    finally:
        p.kill()
        p.wait()
