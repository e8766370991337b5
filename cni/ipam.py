"""`netlab-ipam`: a host-local compatible IPAM plugin.

Same configuration (`ranges` of range sets with subnet, rangeStart, rangeEnd, gateway; `routes`;
`dataDir`) and the same files on disk as the reference host-local, so either plugin can take over
the other's leases: `<dataDir>/<network>/<ip>` holding "<containerID>\\r\\n<ifname>",
`last_reserved_ip.<range set index>` for round-robin allocation, and `lock`, flock()ed around
every change so that concurrent ADDs never hand out one address twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import sys
from collections.abc import Iterator
from typing import Any

from cni import spec

DEFAULT_DATA_DIR = "/var/lib/cni/networks"
LINE_BREAK = "\r\n"
LAST_IP = "last_reserved_ip."


class Range:
    def __init__(self, subnet: Any, start: Any, end: Any, gateway: Any):
        self.subnet, self.start, self.end, self.gateway = subnet, start, end, gateway

    def __contains__(self, ip: Any) -> bool:
        return int(self.start) <= int(ip) <= int(self.end)

    def addresses(self) -> Iterator[Any]:
        for n in range(int(self.start), int(self.end) + 1):
            ip = ipaddress.ip_address(n)
            if ip != self.gateway:
                yield ip

    def __str__(self) -> str:
        return f"{self.start}-{self.end}"


class Config:
    def __init__(self, network: str, range_sets: list[list[Range]], routes: list[dict[str, Any]], data_dir: str):
        self.network, self.range_sets, self.routes, self.data_dir = network, range_sets, routes, data_dir


def _field(i: int, j: int, name: str) -> str:
    return f"ipam.ranges[{i}][{j}].{name}"


def parse_range(r: Any, i: int, j: int) -> Range:
    if not isinstance(r, dict) or "subnet" not in r:
        raise spec.CNIError(spec.INVALID_CONFIG, f"{_field(i, j, 'subnet')} is required")
    try:
        subnet = ipaddress.ip_network(r["subnet"], strict=False)
    except (ValueError, TypeError):
        raise spec.CNIError(spec.INVALID_CONFIG, f"{_field(i, j, 'subnet')}: {r['subnet']!r} is not a subnet "
                            "(expected CIDR such as 10.244.1.0/24)") from None
    if subnet.num_addresses < 4:
        raise spec.CNIError(spec.INVALID_CONFIG, f"{_field(i, j, 'subnet')}: network {subnet} too small to allocate from")

    def addr(name: str, default: Any) -> Any:
        if name not in r:
            return default
        try:
            ip = ipaddress.ip_address(r[name])
        except (ValueError, TypeError):
            raise spec.CNIError(spec.INVALID_CONFIG, f"{_field(i, j, name)}: {r[name]!r} is not an IP address") from None
        if ip not in subnet:
            raise spec.CNIError(spec.INVALID_CONFIG, f"{_field(i, j, name)}: {ip} is not in subnet {subnet}")
        return ip

    gateway = addr("gateway", subnet[1])
    start = addr("rangeStart", subnet[1])
    last = subnet[-1] if subnet.version == 6 else subnet[-2]  # not the IPv4 broadcast address
    end = addr("rangeEnd", last)
    if int(start) > int(end):
        raise spec.CNIError(spec.INVALID_CONFIG, f"{_field(i, j, 'rangeStart')} {start} is after rangeEnd {end}")
    return Range(subnet, start, end, gateway)


def parse_config(conf: dict[str, Any]) -> Config:
    ipam = conf.get("ipam")
    if not isinstance(ipam, dict):
        raise spec.CNIError(spec.INVALID_CONFIG, "network configuration: field 'ipam' is required")
    raw = ipam.get("ranges")
    if raw is None and "subnet" in ipam:  # host-local's older single-range form
        raw = [[{k: ipam[k] for k in ("subnet", "rangeStart", "rangeEnd", "gateway") if k in ipam}]]
    if not isinstance(raw, list) or not raw or not all(isinstance(rs, list) and rs for rs in raw):
        raise spec.CNIError(spec.INVALID_CONFIG, "ipam.ranges: expected a non-empty list of range sets "
                            "(lists of {subnet, rangeStart, rangeEnd, gateway})")
    range_sets = [[parse_range(r, i, j) for j, r in enumerate(rs)] for i, rs in enumerate(raw)]
    flat = [r for rs in range_sets for r in rs]
    for a in range(len(flat)):
        for b in range(a + 1, len(flat)):
            if flat[a].subnet.version == flat[b].subnet.version and \
                    int(flat[a].start) <= int(flat[b].end) and int(flat[b].start) <= int(flat[a].end):
                raise spec.CNIError(spec.INVALID_CONFIG, f"ipam.ranges: range {flat[a]} overlaps range {flat[b]}")
    routes = ipam.get("routes", [])
    if not isinstance(routes, list) or not all(isinstance(r, dict) and "dst" in r for r in routes):
        raise spec.CNIError(spec.INVALID_CONFIG, "ipam.routes: expected a list of {dst, gw}")
    for k, r in enumerate(routes):
        try:
            ipaddress.ip_network(r["dst"], strict=False)
        except (ValueError, TypeError):
            raise spec.CNIError(spec.INVALID_CONFIG, f"ipam.routes[{k}].dst: {r['dst']!r} is not a CIDR") from None
    name = conf["name"]
    if "/" in name or name in (".", ".."):
        raise spec.CNIError(spec.INVALID_CONFIG, f"name: {name!r} cannot be used as a directory name")
    return Config(name, range_sets, routes, ipam.get("dataDir") or DEFAULT_DATA_DIR)


class Store:
    """The on-disk leases of one network, locked for the duration of a `with` block."""

    def __init__(self, config: Config):
        self.dir = os.path.join(config.data_dir, config.network)
        os.makedirs(self.dir, mode=0o755, exist_ok=True)

    def __enter__(self) -> Store:
        self._lock = os.open(os.path.join(self.dir, "lock"), os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self._lock, fcntl.LOCK_UN)
        os.close(self._lock)

    def leases(self) -> Iterator[tuple[str, str, str]]:
        """(ip, container id, ifname) of every lease."""
        for name in os.listdir(self.dir):
            if name == "lock" or name.startswith(LAST_IP):
                continue
            with contextlib.suppress(OSError):
                with open(os.path.join(self.dir, name), newline="") as f:
                    cid, _, ifname = f.read().strip().partition(LINE_BREAK)
                yield name, cid.strip(), ifname.strip()

    def owned_by(self, cid: str, ifname: str) -> list[str]:
        # A lease without an ifname was written by an old host-local: it matches any ifname.
        return [ip for ip, c, i in self.leases() if c == cid and i in (ifname, "")]

    def reserve(self, ip: Any, cid: str, ifname: str, range_id: int) -> bool:
        try:
            fd = os.open(os.path.join(self.dir, str(ip)), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "w") as f:
            f.write(cid.strip() + LINE_BREAK + ifname)
        with open(os.path.join(self.dir, LAST_IP + str(range_id)), "w") as f:
            f.write(str(ip))
        return True

    def last_reserved(self, range_id: int) -> Any:
        with contextlib.suppress(OSError, ValueError):
            with open(os.path.join(self.dir, LAST_IP + str(range_id))) as f:
                return ipaddress.ip_address(f.read().strip())
        return None

    def release(self, ip: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self.dir, ip))


def _candidates(range_set: list[Range], last: Any) -> Iterator[tuple[Range, Any]]:
    """Every address of the range set, starting after the last one reserved (round robin)."""
    order = [(r, ip) for r in range_set for ip in r.addresses()]
    start = 0
    if last is not None:
        for k, (_, ip) in enumerate(order):
            if ip == last:
                start = k + 1
                break
    yield from order[start:] + order[:start]


def _result(config: Config, leased: list[tuple[Range, Any]]) -> dict[str, Any]:
    return {
        "ips": [{"address": f"{ip}/{r.subnet.prefixlen}", "gateway": str(r.gateway)} for r, ip in leased],
        "routes": [dict(rt) for rt in config.routes],
        "dns": {},
    }


def _range_of(config: Config, ip: Any) -> tuple[int, Range] | None:
    for k, rs in enumerate(config.range_sets):
        for r in rs:
            if ip in r:
                return k, r
    return None


def add(call: spec.Call) -> dict[str, Any]:
    config = parse_config(call.config)
    with Store(config) as store:
        mine = [ipaddress.ip_address(ip) for ip in store.owned_by(call.container_id, call.ifname)]
        leased: list[tuple[Range, Any]] = []
        for k, rs in enumerate(config.range_sets):
            have = [ip for ip in mine if any(ip in r for r in rs)]
            if have:  # ADD again for the same attachment: the same address, no second lease
                leased.append((next(r for r in rs if have[0] in r), have[0]))
                continue
            for r, ip in _candidates(rs, store.last_reserved(k)):
                if store.reserve(ip, call.container_id, call.ifname, k):
                    leased.append((r, ip))
                    break
            else:
                for _, ip in leased:  # nothing half-made: give back what this ADD took
                    if ip not in mine:
                        store.release(str(ip))
                raise spec.CNIError(spec.INTERNAL, "failed to allocate for range "
                                    f"{k}: no IP addresses available in range set: {', '.join(map(str, rs))}")
    return _result(config, leased)


def delete(call: spec.Call) -> None:
    config = parse_config(call.config)
    with Store(config) as store:
        for ip in store.owned_by(call.container_id, call.ifname):
            store.release(ip)


def check(call: spec.Call) -> None:
    config = parse_config(call.config)
    with Store(config) as store:
        if not store.owned_by(call.container_id, call.ifname):
            raise spec.CNIError(spec.INTERNAL, f"netlab-ipam: failed to find address added by container "
                                f"{call.container_id}")


def gc(call: spec.Call) -> None:
    """Release every lease whose attachment is not in cni.dev/valid-attachments."""
    config = parse_config(call.config)
    valid = call.config.get("cni.dev/valid-attachments") or []
    if not isinstance(valid, list):
        raise spec.CNIError(spec.INVALID_CONFIG, "cni.dev/valid-attachments: expected a list of {containerID, ifname}")
    keep = {(a.get("containerID", ""), a.get("ifname", "")) for a in valid if isinstance(a, dict)}
    with Store(config) as store:
        for ip, cid, ifname in list(store.leases()):
            if (cid, ifname) not in keep:
                store.release(ip)


def status(call: spec.Call) -> None:
    config = parse_config(call.config)
    with Store(config) as store:
        taken = {ipaddress.ip_address(ip) for ip, _, _ in store.leases()}
    for k, rs in enumerate(config.range_sets):
        if all(ip in taken for r in rs for ip in r.addresses()):
            raise spec.CNIError(spec.NOT_AVAILABLE, f"no IP addresses available in range set {k}: "
                                f"{', '.join(map(str, rs))}")


HANDLERS = {"ADD": add, "DEL": delete, "CHECK": check, "GC": gc, "STATUS": status}


def handle(call: spec.Call, env: dict[str, str] | None = None) -> dict[str, Any] | None:
    """The IPAM's answer to one call, with its result in the call's version."""
    result = HANDLERS[call.command](call)
    return spec.convert(dict(result, cniVersion=call.version), _result_version(call)) if result else None


def _result_version(call: spec.Call) -> str:
    v = call.version
    return v if v in spec.RESULT_VERSIONS else "0.3.0"


def main() -> None:
    sys.exit(spec.respond(handle))


if __name__ == "__main__":
    main()
