"""netlab-bridge and netlab-ipam by the CNI spec's protocol, and side by side with Debian's
reference plugins (containernetworking-plugins in /usr/lib/cni)."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from netlab.lab import build as lab
from netlab.kit import net

pytestmark = pytest.mark.lab
REF = Path("/usr/lib/cni")
NODE = "nltc-node"


class Env:
    """A node namespace holding the bridge, pod namespaces, the CNI bin dir and an agent."""

    def __init__(self, tmp: Path):
        self.tmp, self.pods = tmp, []
        self.bin = tmp / "bin"
        lab.write_cni_launchers(self.bin)
        self.path = f"{self.bin}:{REF}"
        self.data = str(tmp / "ipam")
        self.sock = str(tmp / "agent.sock")
        self.agent = None
        net.ns_create(NODE)

    def start_agent(self) -> None:
        self.agent = net.popen(NODE, [sys.executable, "-m", "cni.agent", "--socket", self.sock])
        end = time.monotonic() + 10
        while not os.path.exists(self.sock) and time.monotonic() < end:
            time.sleep(0.02)

    def pod(self, name: str) -> str:
        ns = f"nltc-{name}"
        net.ns_create(ns)
        self.pods.append(ns)
        return ns

    def conf(self, version: str = "1.1.0", agent: bool = False, **over) -> dict:
        c = {"cniVersion": version, "name": "nltnet", "type": "netlab-bridge", "bridge": "cni0",
             "isDefaultGateway": True, "hairpinMode": True,
             "ipam": {"type": "netlab-ipam", "ranges": [[{"subnet": "10.250.0.0/24"}]], "dataDir": self.data,
                      "routes": [{"dst": "0.0.0.0/0"}]}}
        if agent:
            c["agent"] = self.sock
        c.update(over)
        return c

    def call(self, command: str, conf: dict | bytes, cid: str = "", pod: str = "", ifname: str = "eth0",
             plugin: str | None = None, env: dict | None = None) -> tuple[int, dict | None]:
        name = plugin or (conf.get("type") if isinstance(conf, dict) else "netlab-bridge")
        exe = str(self.bin / name) if (self.bin / name).exists() else str(REF / name)
        e = {"CNI_COMMAND": command, "CNI_CONTAINERID": cid, "CNI_NETNS": f"/run/netns/{pod}" if pod else "",
             "CNI_IFNAME": ifname, "CNI_PATH": self.path, "PATH": os.environ["PATH"]}
        if env is not None:
            e = {k: v for k, v in {**e, **env}.items() if v is not None}
        data = conf if isinstance(conf, bytes) else json.dumps(conf).encode()
        p = net.run(NODE, [exe], input=data, env=e, check=False, text=False)
        out = p.stdout.strip()
        return p.returncode, (json.loads(out) if out else None)

    def close(self) -> None:
        if self.agent:
            self.agent.kill()
            self.agent.wait()
        for ns in self.pods + [NODE]:
            net.kill_ns_processes(ns)
            net.ns_delete(ns)


@pytest.fixture
def env(tmp_path):
    e = Env(tmp_path)
    try:
        yield e
    finally:
        e.close()


def leases(env: Env) -> list[str]:
    d = Path(env.data) / "nltnet"
    return sorted(p.name for p in d.iterdir() if p.name != "lock" and not p.name.startswith("last_")) \
        if d.exists() else []


def ping(ns: str, ip: str) -> bool:
    return net.run(ns, ["ping", "-c1", "-W2", ip], check=False).returncode == 0


def tcp_ok(server_ns: str, client_ns: str, ip: str, port: int = 8080) -> bool:
    srv = net.popen(server_ns, [sys.executable, "-c",
                                "import socket\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
                                f"s.bind(('0.0.0.0',{port}));s.listen();c,_=s.accept();c.sendall(b'pong');c.close()"])
    try:
        for _ in range(50):
            r = net.run(client_ns, [sys.executable, "-c",
                                    f"import socket\nprint(socket.create_connection(('{ip}',{port}),1).recv(4).decode())"],
                        check=False)
            if r.stdout.strip() == "pong":
                return True
            time.sleep(0.1)
        return False
    finally:
        srv.kill()
        srv.wait()


# --- protocol conformance ----------------------------------------------------------------------

@pytest.mark.parametrize("version", ["0.3.1", "0.4.0", "1.0.0", "1.1.0"])
def test_version_command(env, version):
    for plugin in ("netlab-bridge", "netlab-ipam"):
        rc, out = env.call("VERSION", {"cniVersion": version}, plugin=plugin)
        assert rc == 0 and out["cniVersion"] == version
        assert {"0.3.1", "0.4.0", "1.0.0", "1.1.0"} <= set(out["supportedVersions"])


@pytest.mark.parametrize("version", ["0.3.1", "0.4.0", "1.0.0", "1.1.0"])
def test_add_check_del_every_version(env, version):
    pod = env.pod(f"v{version.replace('.', '')}")
    conf = env.conf(version)
    rc, res = env.call("ADD", conf, "c1", pod)
    assert rc == 0, res
    assert res["cniVersion"] == version
    names = [i["name"] for i in res["interfaces"]]
    assert names[0] == "cni0" and names[1].startswith("veth") and len(names[1]) <= 15 and names[2] == "eth0"
    assert res["interfaces"][2]["sandbox"] == f"/run/netns/{pod}"
    ip = res["ips"][0]
    assert ip["address"] == "10.250.0.2/24" and ip["gateway"] == "10.250.0.1" and ip["interface"] == 2
    assert ("version" in ip) == (version < "1.0.0")
    assert {"dst": "0.0.0.0/0", "gw": "10.250.0.1"} in res["routes"]
    assert "10.250.0.2/24" in net.addr_list(pod, "eth0")
    assert {"dst": "default", "via": "10.250.0.1", "dev": "eth0"} in net.route_list(pod)
    assert ping(pod, "10.250.0.1")
    port = net.run(NODE, ["bridge", "-d", "link", "show", "dev", names[1]]).stdout
    assert "master cni0" in port and "hairpin on" in port  # hairpinMode: a pod reaches itself via its Service
    if version >= "0.4.0":
        assert env.call("CHECK", {**conf, "prevResult": res}, "c1", pod) == (0, None)
    else:
        rc, err = env.call("CHECK", {**conf, "prevResult": res}, "c1", pod)
        assert rc == 1 and err["code"] == 1
    assert env.call("DEL", {**conf, "prevResult": res}, "c1", pod) == (0, None)
    assert not net.link_get(pod, "eth0") and leases(env) == []
    # DEL is idempotent: again, and with the namespace gone
    assert env.call("DEL", conf, "c1", pod) == (0, None)
    net.ns_delete(pod)
    assert env.call("DEL", conf, "c1", pod) == (0, None)


def test_add_twice_same_address_and_agent_gives_same_answers(env):
    env.start_agent()
    pod = env.pod("twice")
    rc, first = env.call("ADD", env.conf(agent=True), "c1", pod)
    assert rc == 0, first
    rc, second = env.call("ADD", env.conf(agent=True), "c1", pod)
    assert rc == 0 and second["ips"] == first["ips"]
    assert second["interfaces"][1]["name"] == first["interfaces"][1]["name"]
    assert leases(env) == ["10.250.0.2"]
    lease = (Path(env.data) / "nltnet" / "10.250.0.2").read_bytes()
    assert lease == b"c1\r\neth0"  # host-local's own format
    assert env.call("DEL", env.conf(agent=True), "c1", pod) == (0, None)
    assert leases(env) == []


def test_check_reports_what_is_missing(env):
    pod = env.pod("check")
    conf = env.conf()
    _, res = env.call("ADD", conf, "c1", pod)
    net.route_del(pod, "default")
    rc, err = env.call("CHECK", {**conf, "prevResult": res}, "c1", pod)
    assert rc == 1 and "route 0.0.0.0/0 via 10.250.0.1 not found" in err["msg"]
    net.addr_del(pod, "eth0", "10.250.0.2/24")
    rc, err = env.call("CHECK", {**conf, "prevResult": res}, "c1", pod)
    assert rc == 1 and "address 10.250.0.2/24 not found" in err["msg"]
    net.link_delete(pod, "eth0")
    rc, err = env.call("CHECK", {**conf, "prevResult": res}, "c1", pod)
    assert rc == 1 and "interface eth0 not found" in err["msg"]
    rc, err = env.call("CHECK", conf, "c1", pod)
    assert rc == 1 and err["msg"] == "required prevResult missing"
    env.call("DEL", conf, "c1", pod)


@pytest.mark.parametrize("stdin, env_over, code, message", [
    (b"{not json", {}, 6, "failed to decode network configuration"),
    (None, {"CNI_NETNS": None}, 4, "required env variables [CNI_NETNS] missing"),
    (None, {"CNI_COMMAND": "FROB"}, 4, "CNI_COMMAND 'FROB' is not one of"),
    ({"cniVersion": "9.9.9"}, {}, 1, "incompatible CNI versions"),
    ({"name": None}, {}, 7, "field 'name' is required"),
    ({"ipam": {"type": "netlab-ipam", "ranges": [[{"subnet": "10.250.0.0/33"}]]}}, {}, 7,
     "ipam.ranges[0][0].subnet: '10.250.0.0/33' is not a subnet"),
    ({"ipam": {"type": "netlab-ipam", "ranges": [[{"subnet": "10.250.0.0/24", "rangeStart": "10.9.0.1"}]]}}, {}, 7,
     "ipam.ranges[0][0].rangeStart: 10.9.0.1 is not in subnet 10.250.0.0/24"),
    ({"mtu": "big"}, {}, 7, "mtu: 'big' must be a number"),
    ({"ipam": {}}, {}, 7, "ipam: an IPAM plugin is required"),
])
def test_bad_input_gets_the_spec_error_and_leaves_nothing(env, stdin, env_over, code, message):
    pod = env.pod("bad")
    conf = env.conf()
    if isinstance(stdin, dict):
        conf.update(stdin)
        conf = {k: v for k, v in conf.items() if v is not None}
    data = stdin if isinstance(stdin, bytes) else json.dumps(conf).encode()
    rc, err = env.call("ADD", data, "c1", pod, env=env_over)
    assert rc != 0
    assert err["code"] == code and message in err["msg"], err
    assert not net.link_get(pod, "eth0") and leases(env) == []


def test_full_range_fails_cleanly(env):
    conf = env.conf(ipam={"type": "netlab-ipam", "dataDir": env.data,
                          "ranges": [[{"subnet": "10.250.0.0/29", "rangeStart": "10.250.0.2",
                                       "rangeEnd": "10.250.0.3"}]]})
    pods = [env.pod(f"full{i}") for i in range(3)]
    assert env.call("ADD", conf, "c0", pods[0])[0] == 0
    assert env.call("ADD", conf, "c1", pods[1])[0] == 0
    rc, err = env.call("ADD", conf, "c2", pods[2])
    assert rc == 1 and "no IP addresses available in range set: 10.250.0.2-10.250.0.3" in err["msg"]
    assert not net.link_get(pods[2], "eth0") and leases(env) == ["10.250.0.2", "10.250.0.3"]
    rc, err = env.call("STATUS", conf)
    assert rc == 1 and err["code"] == 50
    for i in range(2):
        env.call("DEL", conf, f"c{i}", pods[i])
    assert env.call("STATUS", conf) == (0, None)


def test_gc_releases_what_is_not_valid(env):
    pods = [env.pod(f"gc{i}") for i in range(3)]
    conf = env.conf()
    for i, pod in enumerate(pods):
        assert env.call("ADD", conf, f"c{i}", pod)[0] == 0
    valid = [{"containerID": "c0", "ifname": "eth0"}, {"containerID": "c2", "ifname": "eth0"}]
    assert env.call("GC", {**conf, "cni.dev/valid-attachments": valid}) == (0, None)
    assert leases(env) == ["10.250.0.2", "10.250.0.4"]
    rc, err = env.call("GC", {**conf, "cniVersion": "1.0.0", "cni.dev/valid-attachments": valid})
    assert rc == 1 and err["code"] == 1


def test_crashed_add_leaves_a_lease_that_gc_reclaims(env):
    """SIGKILL the plugin in the middle of an ADD: the lease it took stays until GC."""
    pod = env.pod("crash")
    e = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "crashed", "CNI_NETNS": f"/run/netns/{pod}", "CNI_IFNAME": "eth0",
         "CNI_PATH": env.path, "PATH": os.environ["PATH"]}
    p = net.popen(NODE, [str(env.bin / "netlab-bridge")], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, env=e)
    p.stdin.write(json.dumps(env.conf()).encode())
    p.stdin.close()
    lease = Path(env.data) / "nltnet" / "10.250.0.2"
    end = time.monotonic() + 10
    while not lease.exists() and time.monotonic() < end:
        time.sleep(0.001)
    os.kill(p.pid, signal.SIGKILL)  # the plugin loads the netlink library after leasing: killed mid-ADD
    p.wait()
    assert leases(env) == ["10.250.0.2"]
    assert env.call("GC", {**env.conf(), "cni.dev/valid-attachments": []}) == (0, None)
    assert leases(env) == []


# --- interop with the reference plugins --------------------------------------------------------

def two_pods_talk(env: Env, conf: dict, plugin: str) -> None:
    a, b = env.pod("ia"), env.pod("ib")
    rc, ra = env.call("ADD", conf, "ca", a, plugin=plugin)
    assert rc == 0, ra
    rc, rb = env.call("ADD", conf, "cb", b, plugin=plugin)
    assert rc == 0, rb
    ip_a, ip_b = (r["ips"][0]["address"].split("/")[0] for r in (ra, rb))
    assert ip_a + "/24" in net.addr_list(a, "eth0") and ip_b + "/24" in net.addr_list(b, "eth0")
    gw = ra["ips"][0]["gateway"]
    assert ping(a, ip_b) and ping(b, gw)
    assert tcp_ok(b, a, ip_b)
    for cid, ns, r in (("ca", a, ra), ("cb", b, rb)):
        assert env.call("DEL", {**conf, "prevResult": r}, cid, ns, plugin=plugin) == (0, None)


def test_netlab_bridge_with_reference_host_local(env):
    conf = env.conf("1.0.0", ipam={"type": "host-local", "ranges": [[{"subnet": "10.250.0.0/24"}]],
                                   "dataDir": env.data, "routes": [{"dst": "0.0.0.0/0"}]})
    two_pods_talk(env, conf, "netlab-bridge")
    assert leases(env) == []


def test_reference_bridge_with_netlab_ipam(env):
    conf = env.conf("1.0.0", type="bridge", bridge="cni1", isDefaultGateway=False, isGateway=True)
    two_pods_talk(env, conf, "bridge")
    assert leases(env) == []


def test_conflist_with_portmap_and_tuning(env):
    """netlab-bridge, then the reference portmap (hostPort reachable) and tuning, each given the
    previous result, as a runtime runs a conflist."""
    pod, client = env.pod("pm"), env.pod("client")
    plugins = [env.conf("1.0.0", ipMasq=True), {"type": "portmap", "capabilities": {"portMappings": True}},
               {"type": "tuning", "sysctl": {"net.ipv4.conf.eth0.rp_filter": "0"}}]
    runtime = {"portMappings": [{"hostPort": 8081, "containerPort": 8080, "protocol": "tcp"}]}
    prev = None
    for p in plugins:
        conf = {**p, "cniVersion": "1.0.0", "name": "nltnet"}
        if p["type"] == "portmap":
            conf["runtimeConfig"] = runtime
        if prev:
            conf["prevResult"] = prev
        rc, prev = env.call("ADD", conf, "cpm", pod)
        assert rc == 0, prev
    assert net.read_sysctl(pod, "net.ipv4.conf.eth0.rp_filter") == "0"
    # a client on the node network reaches the pod through the node's hostPort
    net.veth(NODE, "nltc-up", client, "eth0")
    net.addr_add(NODE, "nltc-up", "192.168.250.1/24")
    net.addr_add(client, "eth0", "192.168.250.2/24")
    srv = prev["ips"][0]["address"].split("/")[0]
    assert srv == "10.250.0.2"
    assert "DNAT" in net.run(NODE, ["iptables-save", "-t", "nat"]).stdout
    ok = tcp_via_hostport(pod, client, "192.168.250.1")
    for p in reversed(plugins):  # DEL in reverse order
        conf = {**p, "cniVersion": "1.0.0", "name": "nltnet", "prevResult": prev}
        if p["type"] == "portmap":
            conf["runtimeConfig"] = runtime
        assert env.call("DEL", conf, "cpm", pod)[0] == 0
    assert ok, "the hostPort did not reach the pod"
    nat = net.run(NODE, ["iptables-save", "-t", "nat"]).stdout
    assert "CNI-" not in nat.replace("CNI-HOSTPORT", "")  # our masquerade chain and portmap's DNAT are gone
    assert leases(env) == []


def tcp_via_hostport(pod: str, client: str, host_ip: str) -> bool:
    srv = net.popen(pod, [sys.executable, "-c",
                          "import socket\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
                          "s.bind(('0.0.0.0',8080));s.listen();c,_=s.accept();c.sendall(b'pong');c.close()"])
    try:
        for _ in range(50):
            r = net.run(client, [sys.executable, "-c", "import socket\n"
                                 f"print(socket.create_connection(('{host_ip}',8081),1).recv(4).decode())"], check=False)
            if r.stdout.strip() == "pong":
                return True
            time.sleep(0.1)
        return False
    finally:
        srv.kill()
        srv.wait()


def test_hundred_concurrent_adds_then_dels(env):
    env.start_agent()
    pods = [env.pod(f"m{i}") for i in range(100)]
    conf = env.conf(agent=True)
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda i: env.call("ADD", conf, f"c{i}", pods[i]), range(100)))
    assert all(rc == 0 for rc, _ in results), [r for rc, r in results if rc]
    ips = {r["ips"][0]["address"] for _, r in results}
    assert len(ips) == 100 and len(leases(env)) == 100
    # all reachable: one ping sweep from the node
    out = net.run(NODE, ["sh", "-c", "for i in $(seq 2 101); do ping -c1 -W2 10.250.0.$i >/dev/null || "
                               "ping -c1 -W2 10.250.0.$i >/dev/null || echo miss $i; done"])
    assert "miss" not in out.stdout
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        dels = list(pool.map(lambda i: env.call("DEL", conf, f"c{i}", pods[i]), range(100)))
    assert all(rc == 0 for rc, _ in dels)
    assert leases(env) == []
    assert not [link for link in net.link_list(NODE) if link["kind"] == "veth"]
