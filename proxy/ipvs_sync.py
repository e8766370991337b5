"""IPVS mode's syncer: the kernel's virtual servers, the Service IPs on kube-ipvs0 (both through
netlab.kit.net, the only code that speaks netlink), the ipsets (`ipset restore`) and the few nat
rules around them (iptables-restore), as upstream's ipvs proxier programs them. Every sync is a
full one."""

from __future__ import annotations

from netlab.kit import net
from proxy.config import Config
from proxy.iptables_sync import IptablesSyncer, detect_backend
from proxy.ipvs_render import DUMMY, bound_addresses, ipsets, nat_text, virtual_servers
from proxy.model import ServicePort
from proxy.syncer import Runner, Syncer, SyncError

MISSING = net.IPVS_MISSING


# What upstream's ipvs proxier sets in the node on start: IPVS connections tracked by conntrack (so
# the nat rules' masquerade applies to them, and a NodePort reached from another node is answered),
# connections to a removed real server and persistence templates of a quiesced one expired.
# And strict ARP (upstream's --ipvs-strict-arp, which MetalLB asks for in IPVS mode): the addresses on
# kube-ipvs0, load-balancer IPs among them, are not answered for on eth0, so only the lb-speaker that
# announces an address answers ARP for it.
SYSCTLS = {"net.ipv4.vs.conntrack": 1, "net.ipv4.vs.expire_nodest_conn": 1, "net.ipv4.vs.expire_quiescent_template": 1,
           "net.ipv4.conf.all.arp_ignore": 1, "net.ipv4.conf.all.arp_announce": 2}


def require_kernel() -> None:
    """The kernel has IPVS (loaded if a module); then the node's IPVS settings, as upstream sets them."""
    if not net.ipvs_available():
        raise SystemExit(f"netlab-proxy: {MISSING}")
    try:
        net.sysctl(None, SYSCTLS)
    except net.NetError as e:
        raise SystemExit(f"netlab-proxy: IPVS mode: {e}") from None


def ipset_restore(ports: list[ServicePort]) -> str:
    """`ipset restore` input that makes every set hold exactly what `ports` need."""
    lines = []
    for name, members in ipsets(ports).items():
        kind = "hash:ip,port,ip" if name == "KUBE-LOOP-BACK" else (
            "bitmap:port range 0-65535" if name.startswith("KUBE-NODE-PORT") else "hash:ip,port")
        lines += [f"create {name} {kind} -exist", f"flush {name}"] + [f"add {name} {m}" for m in members]
    return "\n".join(lines) + "\n"


class IpvsSyncer(Syncer):
    def __init__(self, cfg: Config, runner: Runner | None = None, backend: str | None = None):
        super().__init__(runner)
        self.cfg = cfg
        # the chains and jumps around IPVS
        self.nat = IptablesSyncer(cfg, backend or detect_backend(), self.runner)

    def sync(self, ports: list[ServicePort], full: bool = False) -> str:
        try:
            net.dummy(None, DUMMY)
            want = set(bound_addresses(ports))
            have = set(net.addr_list(None, DUMMY))
            for a in sorted(want - have):
                net.addr_add(None, DUMMY, a)
            for a in sorted(have - want):
                net.addr_del(None, DUMMY, a)
            net.ipvs_apply(None, virtual_servers(ports, self.cfg))
            self.runner.run(["ipset", "restore"], ipset_restore(ports))
            self.nat.ensure_jumps()
            self.runner.run([self.nat.tool("iptables-restore"), "-w", "5", "--noflush"], nat_text(self.cfg))
        except net.NetError as e:
            self.stats.failures += 1
            raise SyncError(f"IPVS: {e}") from e
        except SyncError:
            self.stats.failures += 1
            raise
        return self.counted("full")

    def cleanup(self) -> None:
        if net.link_exists(None, DUMMY):
            net.link_delete(None, DUMMY)
