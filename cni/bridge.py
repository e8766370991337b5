"""`netlab-bridge`: the main CNI plugin. A veth pair from the pod's namespace to a bridge in the
caller's namespace (the node), addresses and routes from the IPAM plugin, and the reference
bridge plugin's options: isGateway, isDefaultGateway, ipMasq, hairpinMode, mtu, promiscMode.

A call is a new process, and the netlink library costs ~160 ms to import. So when the network
configuration names an `agent` socket and a netlab CNI agent (cni.agent) serves it from the same
network namespace, the plugin hands the call over and prints the agent's answer; otherwise it does
the work itself. Either way the same functions below run.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import subprocess
from typing import Any

from cni import spec

NETLAB_IPAM = "netlab-ipam"


# --- configuration -----------------------------------------------------------------------------

def parse_config(conf: dict[str, Any], need_ipam: bool = True) -> dict[str, Any]:
    out = {
        "bridge": conf.get("bridge", "cni0"),
        "isGateway": bool(conf.get("isGateway", False) or conf.get("isDefaultGateway", False)),
        "isDefaultGateway": bool(conf.get("isDefaultGateway", False)),
        "ipMasq": bool(conf.get("ipMasq", False)),
        "hairpinMode": bool(conf.get("hairpinMode", False)),
        "promiscMode": bool(conf.get("promiscMode", False)),
        "mtu": conf.get("mtu"),
    }
    for key in ("isGateway", "isDefaultGateway", "ipMasq", "hairpinMode", "promiscMode"):
        if key in conf and not isinstance(conf[key], bool):
            raise spec.CNIError(spec.INVALID_CONFIG, f"{key}: expected true or false, got {conf[key]!r}")
    if not isinstance(out["bridge"], str) or not 0 < len(out["bridge"]) <= 15:
        raise spec.CNIError(spec.INVALID_CONFIG, f"bridge: {out['bridge']!r} is not an interface name "
                            "(1-15 characters)")
    if out["mtu"] is not None and (not isinstance(out["mtu"], int) or not 68 <= out["mtu"] <= 65535):
        raise spec.CNIError(spec.INVALID_CONFIG, f"mtu: {out['mtu']!r} must be a number between 68 and 65535")
    ipam = conf.get("ipam")
    if need_ipam and (not isinstance(ipam, dict) or not ipam.get("type")):
        raise spec.CNIError(spec.INVALID_CONFIG, "ipam: an IPAM plugin is required (e.g. {\"type\": \"netlab-ipam\"})")
    return out


# --- IPAM: delegated as the spec says; our own IPAM runs in-process (same code, same files) ------

def ipam_call(call: spec.Call, env: dict[str, str], command: str) -> dict[str, Any] | None:
    kind = call.config.get("ipam", {}).get("type")
    if kind == NETLAB_IPAM:
        from cni import ipam

        return ipam.HANDLERS[command](call.but(command=command))
    return spec.delegate(call, kind, env, command)


# --- masquerade, scoped and named like the reference plugin's so DEL removes exactly these -------

def chain_name(network: str, container_id: str) -> str:
    return ("CNI-" + hashlib.sha512((network + container_id).encode()).hexdigest())[:28]


def comment(network: str, container_id: str) -> str:
    return f'name: "{network}" id: "{container_id}"'


def _iptables(*args: str, check: bool = True) -> bool:
    proc = subprocess.run(["iptables", "-w", "5", "-t", "nat", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise spec.CNIError(spec.INTERNAL, f"iptables {' '.join(args)}: {proc.stderr.strip()}")
    return proc.returncode == 0


def masq_setup(network: str, cid: str, addresses: list[str]) -> None:
    chain, note = chain_name(network, cid), comment(network, cid)
    _iptables("-N", chain, check=False)
    for cidr in addresses:
        iface = ipaddress.ip_interface(cidr)
        if iface.version != 4:
            continue
        rules = [[chain, "-d", str(iface.network), "-m", "comment", "--comment", note, "-j", "ACCEPT"],
                 [chain, "!", "-d", "224.0.0.0/4", "-m", "comment", "--comment", note, "-j", "MASQUERADE"],
                 ["POSTROUTING", "-s", str(iface.ip), "-m", "comment", "--comment", note, "-j", chain]]
        for rule in rules:
            if not _iptables("-C", *rule, check=False):
                _iptables("-A", *rule)


def masq_teardown(network: str, cid: str) -> None:
    chain, note = chain_name(network, cid), comment(network, cid)
    out = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.startswith("-A POSTROUTING") and f"-j {chain}" in line:
            rule = line.split()[1:]
            # iptables-save quotes the comment: give iptables the comment as one argument
            if "--comment" in rule:
                k = rule.index("--comment")
                j = rule.index("-j")
                rule = rule[:k + 1] + [note] + rule[j:]
            _iptables("-D", *rule, check=False)
    _iptables("-F", chain, check=False)
    _iptables("-X", chain, check=False)


# --- the netlink work --------------------------------------------------------------------------

def _require_netns(path: str) -> None:
    if not os.path.exists(path):
        raise spec.CNIError(spec.UNKNOWN_CONTAINER, f"failed to open netns {path!r}: no such namespace")


def _routes(conf: dict[str, Any], ipam_result: dict[str, Any]) -> list[dict[str, Any]]:
    routes = [dict(r) for r in ipam_result.get("routes", [])]
    if conf["isDefaultGateway"]:
        for ip in ipam_result.get("ips", []):
            if ip.get("gateway") and ":" not in ip["address"]:
                routes = [r for r in routes if r["dst"] != "0.0.0.0/0"]
                routes.append({"dst": "0.0.0.0/0", "gw": ip["gateway"]})
                break
    return routes


def attach(call: spec.Call, conf: dict[str, Any], ipam_result: dict[str, Any]) -> dict[str, Any]:
    """Bridge, veth, addresses, routes; returns the 1.x result. Undoes its links on failure."""
    from netlab.kit import net

    _require_netns(call.netns)
    bridge = conf["bridge"]
    with net.held(None, call.netns):  # one netlink socket per side for the whole call
        if net.link_exists(call.netns, call.ifname):
            return _describe(call, conf, ipam_result)  # ADD again: the same interface, nothing new
        net.bridge(None, bridge, mtu=conf["mtu"])
        if conf["promiscMode"]:
            net.link_set(None, bridge, promiscuity=1)
        if conf["isGateway"]:
            for ip in ipam_result["ips"]:
                if ip.get("gateway"):
                    net.addr_add(None, bridge, f"{ip['gateway']}/{ip['address'].split('/')[1]}")
            net.sysctl(None, {"net.ipv4.ip_forward": 1})
        host = "veth" + os.urandom(4).hex()
        net.veth(None, host, call.netns, call.ifname, mtu=conf["mtu"], master=bridge)
        try:
            if conf["hairpinMode"]:
                net.attach(None, host, bridge, hairpin=True)
            for ip in ipam_result["ips"]:
                net.addr_add(call.netns, call.ifname, ip["address"])
            for r in _routes(conf, ipam_result):
                gw = r.get("gw") or next((ip["gateway"] for ip in ipam_result["ips"] if ip.get("gateway")), None)
                net.route_add(call.netns, "default" if r["dst"] == "0.0.0.0/0" else r["dst"], via=gw,
                              dev=call.ifname)
            if conf["ipMasq"]:
                masq_setup(call.config["name"], call.container_id, [ip["address"] for ip in ipam_result["ips"]])
        except Exception:
            net.link_delete(call.netns, call.ifname)
            raise
        return _describe(call, conf, ipam_result, host)


def _describe(call: spec.Call, conf: dict[str, Any], ipam_result: dict[str, Any],
              host: str | None = None) -> dict[str, Any]:
    from netlab.kit import net

    interfaces = [{"name": conf["bridge"], "mac": net.link_mac(None, conf["bridge"])}]
    if host is None:  # an existing pair: the pod end's link index is our end's index
        inside = net.link_get(call.netns, call.ifname)
        host = next((link["name"] for link in net.link_list(None) if link["index"] == inside["link"]), None)
    if host:
        interfaces.append({"name": host, "mac": net.link_mac(None, host)})
    interfaces.append({"name": call.ifname, "mac": net.link_mac(call.netns, call.ifname), "sandbox": call.netns})
    ips = [dict(ip, interface=len(interfaces) - 1) for ip in ipam_result["ips"]]
    return {"cniVersion": call.version, "interfaces": interfaces, "ips": ips,
            "routes": _routes(conf, ipam_result), "dns": ipam_result.get("dns") or {}}


def detach(call: spec.Call, conf: dict[str, Any]) -> None:
    from netlab.kit import net

    if call.netns and os.path.exists(call.netns):
        net.link_delete(call.netns, call.ifname)  # the host end goes with it
    if conf["ipMasq"]:
        masq_teardown(call.config["name"], call.container_id)


def verify(call: spec.Call, conf: dict[str, Any], prev: dict[str, Any]) -> None:
    from netlab.kit import net

    _require_netns(call.netns)
    inside = {link["name"] for link in net.link_list(call.netns)}
    if call.ifname not in inside:
        raise spec.CNIError(spec.INTERNAL, f"interface {call.ifname} not found in netns {call.netns}")
    have = set(net.addr_list(call.netns, call.ifname))
    for ip in prev.get("ips", []):
        if ip["address"] not in have:
            raise spec.CNIError(spec.INTERNAL, f"interface {call.ifname}: address {ip['address']} not found")
    routes = {(r["dst"], r["via"]) for r in net.route_list(call.netns)}
    for r in prev.get("routes", []):
        dst = "default" if r["dst"] == "0.0.0.0/0" else str(ipaddress.ip_network(r["dst"], strict=False))
        if ":" in dst:
            continue
        if not any(d == dst and (not r.get("gw") or v == r["gw"]) for d, v in routes):
            raise spec.CNIError(spec.INTERNAL, f"route {r['dst']} via {r.get('gw', '-')} not found in netns "
                                f"{call.netns}")
    if not any(link["name"] == conf["bridge"] for link in net.link_list(None)):
        raise spec.CNIError(spec.INTERNAL, f"bridge {conf['bridge']} not found")


# --- the plugin --------------------------------------------------------------------------------

def handle(call: spec.Call, env: dict[str, str]) -> dict[str, Any] | None:
    conf = parse_config(call.config, need_ipam=call.command in ("ADD", "CHECK"))
    if call.command == "ADD":
        ipam_result = spec.upgrade(ipam_call(call, env, "ADD"))
        if not ipam_result["ips"]:
            ipam_call(call, env, "DEL")
            raise spec.CNIError(spec.INTERNAL, "IPAM plugin returned missing IP config")
        try:
            result = attach(call, conf, ipam_result)
        except BaseException:
            ipam_call(call, env, "DEL")  # nothing half-made: the lease goes too
            raise
        return spec.convert(result, call.version if call.version in spec.RESULT_VERSIONS else "0.3.0")
    if call.command == "DEL":
        if isinstance(call.config.get("ipam"), dict) and call.config["ipam"].get("type"):
            ipam_call(call, env, "DEL")
        detach(call, conf)
        return None
    if call.command == "CHECK":
        prev = call.config.get("prevResult")
        if not prev:
            raise spec.CNIError(spec.INVALID_CONFIG, "required prevResult missing")
        ipam_call(call, env, "CHECK")
        verify(call, conf, spec.upgrade(prev))
        return None
    if call.command in ("GC", "STATUS"):
        if isinstance(call.config.get("ipam"), dict) and call.config["ipam"].get("type"):
            ipam_call(call, env, call.command)
        return None
    raise spec.CNIError(spec.INVALID_ENV, f"unknown command {call.command}")


def main() -> None:
    from cni import fastpath

    fastpath.run(handle)


if __name__ == "__main__":
    main()
