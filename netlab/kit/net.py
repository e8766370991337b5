"""Namespaces and links: the only module of netlab that speaks netlink (through pyroute2).

Every function takes the network namespace it acts in by name (`ns=None` is the caller's own).
Namespaces live under /run/netns, as `ip netns` keeps them, so `ip netns exec` and `ip -n` see them.
pyroute2 is slow to import (~160 ms), so it is imported where it is used: a process that only
runs commands in a namespace never pays for it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import ipaddress
import os
import pickle
import signal
import socket
import struct
import subprocess
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

NETNS_DIR = "/run/netns"
CLONE_NEWNET, CLONE_NEWNS, CLONE_NEWUTS = 0x40000000, 0x00020000, 0x04000000
_libc = ctypes.CDLL(None, use_errno=True)


class NetError(RuntimeError):
    """A kernel operation failed; the message names the object and the operation."""


# --- namespaces ---------------------------------------------------------------------------------

def ns_path(name: str) -> str:
    return os.path.join(NETNS_DIR, name)


def ns_exists(name: str) -> bool:
    return os.path.exists(ns_path(name))


def ns_list() -> list[str]:
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


MS_BIND, MS_REC, MS_PRIVATE, MS_SHARED = 4096, 16384, 1 << 18, 1 << 20
_netns_dir_ready = False


def _netns_dir() -> None:
    """/run/netns as `ip netns add` leaves it: a shared mount, so that a namespace bound there is
    seen from every mount namespace (a container's too)."""
    global _netns_dir_ready
    if _netns_dir_ready:
        return
    os.makedirs(NETNS_DIR, exist_ok=True)
    if _libc.mount(b"", NETNS_DIR.encode(), b"none", MS_SHARED | MS_REC, None) != 0:
        if _libc.mount(NETNS_DIR.encode(), NETNS_DIR.encode(), b"none", MS_BIND | MS_REC, None) != 0 or \
                _libc.mount(b"", NETNS_DIR.encode(), b"none", MS_SHARED | MS_REC, None) != 0:
            raise NetError(f"cannot make {NETNS_DIR} a shared mount: {os.strerror(ctypes.get_errno())}")
    _netns_dir_ready = True


def ns_create(name: str, sysctls: dict[str, str | int] | None = None) -> None:
    """Create a named network namespace (idempotent), with its loopback up and `sysctls` (e.g. one
    of the *_SYSCTLS below) set before anything is made in it. The calling thread steps into a new
    namespace, binds it at /run/netns/<name> and steps back: no helper process (pyroute2 forks one,
    which costs a pod more CPU than the rest of its network set-up)."""
    if ns_exists(name):
        return
    _netns_dir()
    path = ns_path(name)
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
    except FileExistsError:
        return  # made meanwhile by another caller
    here = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        if _libc.unshare(CLONE_NEWNET) != 0:
            raise NetError(f"unshare a network namespace for {name}: {os.strerror(ctypes.get_errno())}")
        try:
            if _libc.mount(b"/proc/thread-self/ns/net", path.encode(), b"none", MS_BIND, None) != 0:
                raise NetError(f"bind {path}: {os.strerror(ctypes.get_errno())}")
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:  # lo up
                _ifreq(sock, SIOCSIFFLAGS, "lo", _ifreq(sock, SIOCGIFFLAGS, "lo") | IFF_UP)
            if sysctls:  # /proc/sys/net shows the namespace of the thread that opens it: this one
                _write_sysctls({k: str(v) for k, v in sysctls.items()})
        finally:
            if _libc.setns(here, CLONE_NEWNET) != 0:
                raise NetError("cannot return to the caller's network namespace")
    except BaseException:
        ns_delete(name)
        raise
    finally:
        os.close(here)


def ns_delete(name: str) -> None:
    """Remove a named namespace (idempotent). Links inside it go with it once no process holds it."""
    path = ns_path(name)
    if not os.path.lexists(path):
        return
    _libc.umount2(path.encode(), 2)  # MNT_DETACH; a stale file (no mount) just fails here
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def ns_pids(name: str) -> list[int]:
    """The processes whose network namespace is `name` (to stop them before the namespace goes)."""
    try:
        st = os.stat(ns_path(name))
    except FileNotFoundError:
        return []
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            s = os.stat(f"/proc/{pid}/ns/net")
            if (s.st_dev, s.st_ino) == (st.st_dev, st.st_ino):
                pids.append(int(pid))
    return pids


def kill_ns_processes(name: str, sig: int = signal.SIGKILL) -> None:
    for pid in ns_pids(name):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def setns(name: str | None) -> None:
    """Move the calling thread into namespace `name` (None: the host's, as seen by PID 1)."""
    path = ns_path(name) if name else "/proc/1/ns/net"
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            raise NetError(f"setns {path}: {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(fd)


@contextlib.contextmanager
def entered(ns: str | None) -> Iterator[None]:
    """The calling thread inside namespace `ns` for the block (None: where it is), and back in its
    own afterwards, also on error. What a socket made in the block is bound to: a socket stays in
    the namespace it was made in."""
    if not ns:
        yield
        return
    here = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        setns(ns)
        yield
    finally:
        try:
            if _libc.setns(here, CLONE_NEWNET) != 0:
                raise NetError("cannot return to the caller's network namespace")
        finally:
            os.close(here)


_local = threading.local()  # netlink sockets held open by `held`, per thread (a socket is not thread-safe)


def _held() -> dict[str | None, Any]:
    if not hasattr(_local, "held"):
        _local.held = {}
    return _local.held


def _new_ipr() -> Any:
    """An IPRoute socket in the thread's namespace, with a datagram socket beside it for the
    interface ioctls (an index by name without decoding a whole link message)."""
    from pyroute2 import IPRoute

    ip = IPRoute()
    ip.netlab_ioctl = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    return ip


def _close(ip: Any) -> None:
    ip.netlab_ioctl.close()
    ip.close()


def _open(ns: str | None) -> Any:
    """An IPRoute socket bound to namespace `ns`: the thread steps into the namespace just to
    create the socket (a socket stays in the namespace it was made in), which is far cheaper
    than pyroute2's own way of forking a helper process."""
    if ns and not os.path.exists(ns_path(ns)):
        raise NetError(f"no network namespace {ns}")
    with entered(ns):
        return _new_ipr()


def socket_in(ns: str | None, family: int = socket.AF_INET, type: int = socket.SOCK_STREAM,
              proto: int = 0) -> socket.socket:
    """A socket made in namespace `ns` (None: the caller's own): it binds, connects and listens
    there whatever thread or namespace uses it later, so one process can reach into a node's
    network. The calling thread steps into `ns` just to create it."""
    if not ns:
        return socket.socket(family, type, proto)
    here = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        setns(ns)
        try:
            return socket.socket(family, type, proto)
        finally:
            if _libc.setns(here, CLONE_NEWNET) != 0:
                raise NetError("cannot return to the caller's network namespace")
    finally:
        os.close(here)


@contextlib.contextmanager
def ipr(ns: str | None = None) -> Iterator[Any]:
    """An IPRoute socket in namespace `ns`: the one `held` keeps open, or a new one closed on exit."""
    held_now = _held()
    if ns in held_now:
        yield held_now[ns]
        return
    ip = _open(ns)
    try:
        yield ip
    finally:
        _close(ip)


@contextlib.contextmanager
def held(*namespaces: str | None) -> Iterator[None]:
    """Keep one netlink socket open per namespace for the block: opening one in a namespace
    costs milliseconds, so work on many objects (a lab's routes) is batched under this."""
    held_now = _held()
    opened = [ns for ns in namespaces if ns not in held_now]
    try:
        for ns in opened:
            held_now[ns] = _open(ns)
        yield
    finally:
        for ns in opened:
            ip = held_now.pop(ns, None)
            if ip is not None:
                _close(ip)


# --- running code inside a namespace -----------------------------------------------------------

def run(ns: str | None, argv: Sequence[str], check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess:
    """Run a command inside namespace `ns` and wait for it (output captured as text by default)."""
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    proc = subprocess.run(list(argv), preexec_fn=_enter(ns), **kwargs)
    if check and proc.returncode != 0:
        err = (proc.stderr or "").strip() if isinstance(proc.stderr, str) else ""
        raise NetError(f"{' '.join(argv)} in {ns or 'host'} failed ({proc.returncode}): {err}")
    return proc


def popen(ns: str | None, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen:
    """Start a command inside namespace `ns` without waiting for it."""
    return subprocess.Popen(list(argv), preexec_fn=_enter(ns), **kwargs)


def _enter(ns: str | None) -> Callable[[], None] | None:
    return (lambda: setns(ns)) if ns else None


def call_in(ns: str | None, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a picklable-result Python callable inside namespace `ns` in a forked child; return its
    result or raise its exception. The caller never changes namespace."""
    if ns is None:
        return fn(*args, **kwargs)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(r)
        try:
            setns(ns)
            out = (True, fn(*args, **kwargs))
        except BaseException as e:  # noqa: BLE001 - handed back to the parent
            out = (False, e)
        try:
            data = pickle.dumps(out)
        except Exception as e:  # noqa: BLE001
            data = pickle.dumps((False, NetError(f"unpicklable result: {e}")))
        with os.fdopen(w, "wb") as f:
            f.write(data)
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    ok, value = pickle.loads(data) if data else (False, NetError(f"child in {ns} died"))
    if not ok:
        raise value
    return value


# --- sysctls -----------------------------------------------------------------------------------

# What each kind of namespace netlab makes is set to, whatever the host's values: a new namespace
# starts with the host's IPv4 `all` and `default` settings (net.core.devconf_inherit_init_net=0),
# so on a host with Docker (ip_forward=1) the lab's router and every pod would forward packets.
# IPv6 is off everywhere (the lab is IPv4); its keys are skipped on a kernel without IPv6.
_NO_IPV6_FORWARDING = {"net.ipv6.conf.all.forwarding": 0, "net.ipv6.conf.default.forwarding": 0}
ROUTER_SYSCTLS = {"net.ipv4.ip_forward": 0, **_NO_IPV6_FORWARDING}   # the lab's namespace: forwards nothing
NODE_SYSCTLS = {                                                      # a node: routes its pods' traffic
    "net.ipv4.ip_forward": 1, **_NO_IPV6_FORWARDING,
    # loose paths are normal on a node (DNAT to another node's pod, vxlan): no reverse-path drop;
    # `default` before any link is made, so every link takes it
    "net.ipv4.conf.all.rp_filter": 0, "net.ipv4.conf.default.rp_filter": 0,
    "net.bridge.bridge-nf-call-iptables": 1,  # bridged pod traffic through kube-proxy's rules
}
POD_SYSCTLS = {"net.ipv4.ip_forward": 0, **_NO_IPV6_FORWARDING}      # a pod: an end host


def _write_sysctls(values: dict[str, str]) -> None:
    for key, value in values.items():
        path = "/proc/sys/" + key.replace(".", "/")
        if key.startswith("net.bridge.") and not os.path.exists(path):
            load_modules("br_netfilter")  # a stock kernel has it as a module, loaded on demand
        try:
            with open(path, "w") as f:
                f.write(str(value))
        except FileNotFoundError:
            if key.startswith("net.ipv6.") and not os.path.exists("/proc/sys/net/ipv6"):
                continue  # no IPv6 in this kernel: nothing to forward
            raise NetError(f"sysctl {key}: not in this kernel" + (
                " (load br_netfilter: modprobe br_netfilter)" if key.startswith("net.bridge.") else "")) from None


def sysctl(ns: str | None, values: dict[str, str | int]) -> None:
    """Set sysctls (dotted names, e.g. net.ipv4.ip_forward) as seen from namespace `ns`.
    /proc/sys/net is per network namespace, so it is written from inside it."""
    call_in(ns, _write_sysctls, {k: str(v) for k, v in values.items()})


def read_sysctl(ns: str | None, key: str) -> str:
    def _read(k: str) -> str:
        with open("/proc/sys/" + k.replace(".", "/")) as f:
            return f.read().strip()

    return call_in(ns, _read, key)


# --- links -------------------------------------------------------------------------------------

SIOCGIFINDEX, SIOCGIFFLAGS, SIOCSIFFLAGS, SIOCGIFHWADDR, IFF_UP = 0x8933, 0x8913, 0x8914, 0x8927, 0x1


def _ifreq(sock: socket.socket, request: int, ifname: str, value: int = 0) -> int:
    """An interface ioctl in the socket's namespace: the int field of struct ifreq, in and out."""
    req = struct.pack("16si", ifname.encode(), value)
    return struct.unpack("16si", fcntl.ioctl(sock.fileno(), request, req))[1]


def _lookup(ip: Any, ifname: str) -> list[int]:
    """The link's index by name, as if_nametoindex asks it (an ioctl in the socket's namespace:
    not a dump of every link, which link_lookup does, nor a whole link message to decode)."""
    try:
        return [_ifreq(ip.netlab_ioctl, SIOCGIFINDEX, ifname)]
    except OSError as e:
        if e.errno == errno.ENODEV:  # no such link
            return []
        raise


def _index(ip: Any, ifname: str) -> int:
    idx = _lookup(ip, ifname)
    if not idx:
        raise NetError(f"no link {ifname!r}")
    return idx[0]


def link_exists(ns: str | None, ifname: str) -> bool:
    with ipr(ns) as ip:
        return bool(_lookup(ip, ifname))


def link_list(ns: str | None = None) -> list[dict[str, Any]]:
    """Links as dicts: name, index, kind, mtu, mac, master (name), link (peer index), state."""
    with ipr(ns) as ip:
        links = ip.get_links()
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in links}
        out = []
        for link in links:
            info = link.get_attr("IFLA_LINKINFO")
            out.append({
                "name": link.get_attr("IFLA_IFNAME"),
                "index": link["index"],
                "kind": info.get_attr("IFLA_INFO_KIND") if info else None,
                "mtu": link.get_attr("IFLA_MTU"),
                "mac": link.get_attr("IFLA_ADDRESS"),
                "master": names.get(link.get_attr("IFLA_MASTER")),
                "link": link.get_attr("IFLA_LINK"),  # a veth's peer index (in the peer's namespace)
                "state": link.get_attr("IFLA_OPERSTATE"),
            })
        return out


def link_get(ns: str | None, ifname: str) -> dict[str, Any] | None:
    """One link as link_list describes it (without its master's name), or None."""
    with ipr(ns) as ip:
        idx = _lookup(ip, ifname)
        if not idx:
            return None
        link = ip.get_links(idx[0])[0]
        return {"name": ifname, "index": idx[0], "mac": link.get_attr("IFLA_ADDRESS"),
                "mtu": link.get_attr("IFLA_MTU"), "link": link.get_attr("IFLA_LINK")}


def link_mac(ns: str | None, ifname: str) -> str:
    """A link's MAC address (an ioctl, as `ip link` would print it)."""
    with ipr(ns) as ip:
        req = struct.pack("16s24s", ifname.encode(), b"")
        try:
            out = fcntl.ioctl(ip.netlab_ioctl.fileno(), SIOCGIFHWADDR, req)
        except OSError as e:
            raise NetError(f"no link {ifname!r} in {ns or 'host'}: {e.strerror}") from None
        return ":".join(f"{b:02x}" for b in out[18:24])


def link_set(ns: str | None, ifname: str, **attrs: Any) -> None:
    """Set link attributes with pyroute2's names: state="up", mtu=1450, master=index, address=mac..."""
    with ipr(ns) as ip:
        ip.link("set", index=_index(ip, ifname), **attrs)


def link_up(ns: str | None, ifname: str) -> None:
    link_set(ns, ifname, state="up")


def link_delete(ns: str | None, ifname: str) -> None:
    """Delete a link (idempotent); deleting one end of a veth removes both."""
    with ipr(ns) as ip:
        idx = _lookup(ip, ifname)
        if idx:
            with contextlib.suppress(Exception):
                ip.link("del", index=idx[0])


def veth(ns: str | None, ifname: str, peer_ns: str | None, peer: str, *, mtu: int | None = None,
         master: str | None = None, up: bool = True) -> None:
    """A veth pair: `ifname` in `ns` (enslaved to bridge `master` if given), its peer named `peer`
    made directly in `peer_ns` (None: the caller's own namespace), both up. One netlink request."""
    extra = {"mtu": mtu} if mtu else {}
    peer_spec: dict[str, Any] = {"ifname": peer, **extra}
    fd = None
    if peer_ns != ns:
        fd = os.open(ns_path(peer_ns) if peer_ns else "/proc/thread-self/ns/net", os.O_RDONLY)
        peer_spec["net_ns_fd"] = fd
    try:
        with ipr(ns) as ip:
            kw: dict[str, Any] = dict(extra)
            if master:
                kw["master"] = _index(ip, master)
            if up:
                kw["state"] = "up"
            ip.link("add", ifname=ifname, kind="veth", peer=peer_spec, **kw)
    finally:
        if fd is not None:
            os.close(fd)
    if up:
        try:
            link_up(peer_ns, peer)
        except Exception:
            link_delete(ns, ifname)
            raise


def bridge(ns: str | None, name: str, *, mtu: int | None = None) -> None:
    """A Linux bridge, up (idempotent, and safe when several callers make it at once)."""
    from pyroute2.netlink.exceptions import NetlinkError

    with ipr(ns) as ip:
        if not _lookup(ip, name):
            try:
                ip.link("add", ifname=name, kind="bridge", **({"mtu": mtu} if mtu else {}))
            except NetlinkError as e:
                if e.code != errno.EEXIST:  # another call made it meanwhile: fine
                    raise
        ip.link("set", index=_index(ip, name), state="up")


def attach(ns: str | None, ifname: str, bridge_name: str, *, hairpin: bool = False) -> None:
    """Enslave `ifname` to bridge `bridge_name` (and set the port's hairpin mode)."""
    with ipr(ns) as ip:
        idx = _index(ip, ifname)
        ip.link("set", index=idx, master=_index(ip, bridge_name), state="up")
        if hairpin:
            ip.brport("set", index=idx, mode=1)  # IFLA_BRPORT_MODE is the hairpin flag


def vxlan(ns: str | None, name: str, *, vni: int, local: str, dev: str, port: int = 8472,
          mtu: int | None = None) -> None:
    """A VXLAN device as flannel makes it (learning off: FDB and neighbours are set explicitly)."""
    with ipr(ns) as ip:
        ip.link("add", ifname=name, kind="vxlan", vxlan_id=vni, vxlan_local=local,
                vxlan_link=_index(ip, dev), vxlan_port=port, vxlan_learning=0,
                **({"mtu": mtu} if mtu else {}))
        ip.link("set", index=_index(ip, name), state="up")


def fdb_append(ns: str | None, dev: str, mac: str, dst: str) -> None:
    """A bridge FDB entry on a vxlan device: frames for `mac` go to VTEP `dst`."""
    with ipr(ns) as ip:
        ip.fdb("append", ifindex=_index(ip, dev), lladdr=mac, dst=dst)


def neigh_replace(ns: str | None, dev: str, ip_addr: str, mac: str) -> None:
    """A permanent neighbour entry (the remote VTEP's overlay address -> its MAC)."""
    with ipr(ns) as ip:
        ip.neigh("replace", dst=ip_addr, lladdr=mac, ifindex=_index(ip, dev), state="permanent")


# --- addresses and routes ----------------------------------------------------------------------

def addr_add(ns: str | None, ifname: str, cidr: str) -> None:
    """Add `cidr` (e.g. 10.244.0.1/24) to `ifname` (idempotent)."""
    iface = ipaddress.ip_interface(cidr)
    from pyroute2.netlink.exceptions import NetlinkError

    with ipr(ns) as ip:
        try:
            ip.addr("add", index=_index(ip, ifname), address=str(iface.ip), prefixlen=iface.network.prefixlen)
        except NetlinkError as e:
            if e.code != errno.EEXIST:  # there already: fine
                raise


def addr_del(ns: str | None, ifname: str, cidr: str) -> None:
    iface = ipaddress.ip_interface(cidr)
    with ipr(ns) as ip, contextlib.suppress(Exception):
        ip.addr("del", index=_index(ip, ifname), address=str(iface.ip), prefixlen=iface.network.prefixlen)


def addr_list(ns: str | None, ifname: str | None = None) -> list[str]:
    """Addresses as CIDR strings (IPv4 and IPv6), of one link or all."""
    with ipr(ns) as ip:
        kw = {"index": _index(ip, ifname)} if ifname else {}
        return [f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}" for a in ip.get_addr(**kw)]


def route_add(ns: str | None, dst: str, *, via: str | None = None, dev: str | None = None,
              onlink: bool = False, src: str | None = None, replace: bool = True) -> None:
    """Add (or replace) a route; `dst` is a CIDR or "default"."""
    spec: dict[str, Any] = {"dst": dst}
    if via:
        spec["gateway"] = via
    if src:
        spec["prefsrc"] = src
    if onlink:
        spec["flags"] = 4  # RTNH_F_ONLINK
    from pyroute2.netlink.exceptions import NetlinkError

    with ipr(ns) as ip:
        if dev:
            spec["oif"] = _index(ip, dev)
        try:
            ip.route("replace" if replace else "add", **spec)
        except NetlinkError as e:
            raise NetError(f"route {dst}{f' via {via}' if via else ''}: {os.strerror(e.code)}") from e


def route_del(ns: str | None, dst: str) -> None:
    """Delete a route (idempotent); `dst` is a CIDR or "default"."""
    with ipr(ns) as ip, contextlib.suppress(Exception):
        ip.route("del", dst="0.0.0.0/0" if dst == "default" else dst)


def route_list(ns: str | None = None) -> list[dict[str, Any]]:
    """IPv4 routes of the main table: dst (CIDR or "default"), via, dev."""
    with ipr(ns) as ip:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ip.get_links()}
        out = []
        for r in ip.get_routes(family=2, table=254):
            dst = r.get_attr("RTA_DST")
            out.append({
                "dst": f"{dst}/{r['dst_len']}" if dst else "default",
                "via": r.get_attr("RTA_GATEWAY"),
                "dev": names.get(r.get_attr("RTA_OIF")),
            })
        return out


# --- link impairments (tc: netem for delay, jitter and loss; tbf for a rate) ----------------------

QDISC_MODULES = {"netem": ("sch_netem", "CONFIG_NET_SCH_NETEM"), "tbf": ("sch_tbf", "CONFIG_NET_SCH_TBF")}


def _tc(ns: str | None, argv: list[str], qdisc: str) -> None:
    r = run(ns, ["tc", *argv], check=False)
    if r.returncode:
        err = (r.stderr or r.stdout).strip().splitlines()
        if any(s in r.stderr for s in ("qdisc kind is unknown", "No such file or directory", "Unknown qdisc")):
            module, option = QDISC_MODULES[qdisc]
            raise NetError(f"link impairments need the kernel's {qdisc} queueing discipline (the {module} module, "
                           f"{option}), which this kernel lacks")
        raise NetError(f"tc {' '.join(argv)}: {err[-1] if err else 'exit ' + str(r.returncode)}")


def link_impair(ns: str | None, ifname: str, imp: Any) -> None:
    """Make what `ifname` sends in `ns` exactly `imp` (a netlab.kit.impair.Impairment): netem as the
    root qdisc for delay, jitter and loss, with tbf under it (or alone) for a rate; none: the
    kernel's default qdisc again."""
    run(ns, ["tc", "qdisc", "del", "dev", ifname, "root"], check=False)  # none there: nothing to delete
    if imp.none:
        return
    netem = []
    if imp.delay_ms:
        netem += ["delay", f"{imp.delay_ms:g}ms"] + ([f"{imp.jitter_ms:g}ms"] if imp.jitter_ms else [])
    if imp.loss_pct:
        netem += ["loss", f"{imp.loss_pct:g}%"]
    tbf = ["tbf", "rate", imp.rate, "burst", "32kb", "latency", "400ms"] if imp.rate else []
    if netem:
        load_modules("sch_netem")
        _tc(ns, ["qdisc", "add", "dev", ifname, "root", "handle", "1:", "netem", *netem], "netem")
    if tbf:
        load_modules("sch_tbf")
        where = ["parent", "1:1", "handle", "10:"] if netem else ["root", "handle", "1:"]
        _tc(ns, ["qdisc", "add", "dev", ifname, *where, *tbf], "tbf")


def qdisc_available(kind: str) -> bool:
    """Whether the kernel has the netem or tbf qdisc (loaded if a module): tried on the loopback of a
    namespace made for the question and gone with it."""
    load_modules(QDISC_MODULES[kind][0])
    args = ["delay", "1ms"] if kind == "netem" else ["rate", "1mbit", "burst", "32kb", "latency", "50ms"]
    try:
        return subprocess.run(["unshare", "--net", "tc", "qdisc", "add", "dev", "lo", "root", kind, *args],
                              capture_output=True).returncode == 0
    except FileNotFoundError:
        return False


def link_qdiscs(ns: str | None, ifname: str) -> str:
    """`tc qdisc show` of the link: what its impairments are in the kernel."""
    return run(ns, ["tc", "qdisc", "show", "dev", ifname], check=False).stdout


# --- IPVS (kube-proxy's ipvs mode) -------------------------------------------------------------

IPVS_MISSING = ("IPVS mode needs the kernel's IP Virtual Server (the ip_vs module, CONFIG_IP_VS), which this kernel "
                "lacks (no /proc/net/ip_vs); use proxyMode iptables or nftables, or a kernel with ip_vs (the Vagrant VM)")


def load_modules(*names: str) -> bool:
    """modprobe each kernel module (as kube-proxy and kubeadm's preflight do: a stock kernel loads
    ip_vs, br_netfilter or sch_netem only on demand). False if any could not be loaded."""
    ok = True
    for name in names:
        try:
            ok &= subprocess.run(["modprobe", "-q", name], capture_output=True).returncode == 0
        except FileNotFoundError:  # no kmod: a kernel with everything built in, or nothing to load
            ok = False
    return ok


def ipvs_available() -> bool:
    """Whether the kernel has IP Virtual Server (the ip_vs module, CONFIG_IP_VS), loaded if it is a
    module, with the round-robin scheduler."""
    if not os.path.exists("/proc/net/ip_vs"):
        load_modules("ip_vs", "ip_vs_rr")
    return os.path.exists("/proc/net/ip_vs")


# IP_VS_CONN_F_MASQ: the real server is reached by NAT (kube-proxy's forwarding method). pyroute2's
# default is direct routing (3), which keeps the Service IP as the destination: the packet then
# loops between nodes instead of reaching the pod.
IPVS_MASQ = 0
IPVS_PERSISTENT = 1  # IP_VS_SVC_F_PERSISTENT: sessionAffinity ClientIP


def ipvs_apply(ns: str | None, services: dict[tuple, tuple[str, int, list[tuple[str, int]]]]) -> None:
    """Make the namespace's IPVS table exactly `services`: {(ip, port, proto): (scheduler,
    persistence seconds, [(real ip, real port), ...])}, every real server weight 1 by NAT (Masq)."""
    import socket

    from pyroute2 import IPVS, IPVSDest, IPVSService

    protos = {"TCP": socket.IPPROTO_TCP, "UDP": socket.IPPROTO_UDP, "SCTP": 132}
    with entered(ns):
        ipvs = IPVS()
    with ipvs:
        current = {}
        for msg in ipvs.service("dump"):
            s = IPVSService.from_message(msg)
            current[(s["addr"], s["port"], {v: k for k, v in protos.items()}.get(s["protocol"], ""))] = s
        for key, svc in current.items():
            if key not in services:
                ipvs.service("del", service=svc)
        for (ip, port, proto), (sched, persist, reals) in services.items():
            flags = IPVS_PERSISTENT if persist else 0
            svc = IPVSService(addr=ip, port=port, protocol=protos[proto], sched_name=sched,
                              flags={"flags": flags, "mask": IPVS_PERSISTENT}, timeout=persist)
            old = current.get((ip, port, proto))
            if old is None:
                ipvs.service("add", service=svc)
            elif _ipvs_service_differs(old, sched, flags, persist):  # affinity or scheduler changed
                ipvs.service("set", service=svc)
            have = {(d["addr"], d["port"]): d for d in (IPVSDest.from_message(m) for m in ipvs.dest("dump", service=svc))}
            for rip, rport in set(have) - set(reals):
                ipvs.dest("del", service=svc, dest=IPVSDest(addr=rip, port=rport))
            for rip, rport in reals:
                dest = IPVSDest(addr=rip, port=rport, weight=1, fwd_method=IPVS_MASQ)
                d = have.get((rip, rport))
                if d is None:
                    ipvs.dest("add", service=svc, dest=dest)
                elif d.get("fwd_method", IPVS_MASQ) != IPVS_MASQ or d.get("weight", 1) != 1:
                    ipvs.dest("set", service=svc, dest=dest)


def _ipvs_service_differs(s: dict, sched: str, flags: int, persist: int) -> bool:
    have_flags = s.get("flags", {})
    have_flags = have_flags.get("flags", 0) if isinstance(have_flags, dict) else have_flags
    return s.get("sched_name") != sched or (have_flags & IPVS_PERSISTENT) != flags or \
        (bool(persist) and s.get("timeout") != persist)


def dummy(ns: str | None, name: str) -> None:
    """A dummy link, down as kube-ipvs0 is (it only holds addresses), created if missing."""
    with ipr(ns) as ip:
        if not _lookup(ip, name):
            ip.link("add", ifname=name, kind="dummy")
