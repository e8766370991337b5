"""Conntrack clean-up after a sync, as upstream's pkg/proxy/conntrack: UDP has no connection to
end, so when an endpoint goes its conntrack entries are deleted and clients stop sending to it
(and so are a Service's entries when it just got endpoints: they may hold a rejection)."""

from __future__ import annotations

from proxy.model import ServicePort
from proxy.syncer import Runner


def stale_udp(old: list[ServicePort], new: list[ServicePort]) -> list[list[str]]:
    """The conntrack commands that clean up after going from `old` to `new`."""
    def udp(ports):
        return {(p.cluster_ip, p.port, p.node_port): {e.ip for e in p.endpoints if e.ready or e.serving}
                for p in ports if p.protocol == "UDP"}
    before, after = udp(old), udp(new)
    cmds = []
    for (ip, _port, _np), eps in before.items():
        gone = eps - after.get((ip, _port, _np), set())
        for ep in sorted(gone):
            cmds.append(["conntrack", "-D", "-p", "udp", "--orig-dst", ip, "--dst-nat", ep])
    for key, eps in after.items():
        if eps and not before.get(key):
            cmds.append(["conntrack", "-D", "-p", "udp", "--orig-dst", key[0]])
    return cmds


def cleanup(old: list[ServicePort], new: list[ServicePort], runner: Runner | None = None) -> list[list[str]]:
    """Run stale_udp's commands; returns them."""
    runner = runner or Runner()
    cmds = stale_udp(old, new)
    for c in cmds:
        runner.run(c, check=False)  # exit 1 when there was nothing to delete
    return cmds
