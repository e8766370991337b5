"""kube-proxy's modes by name: for each, its syncer and what `netlab-proxy render` prints; and
`cleanup_all`, what `kube-proxy --cleanup` does for every mode at once."""

from __future__ import annotations

import logging

from proxy import iptables_render, ipvs_render, ipvs_sync, nftables_render
from proxy.config import Config
from proxy.iptables_sync import IptablesSyncer, detect_backend
from proxy.ipvs_sync import IpvsSyncer
from proxy.model import service_ports
from proxy.nftables_sync import NftablesSyncer
from proxy.syncer import Runner, Syncer, SyncError

log = logging.getLogger("netlab.proxy")
MODES = ("iptables", "nftables", "ipvs")


def syncer(mode: str, cfg: Config, iptables_backend: str = "auto", runner: Runner | None = None) -> Syncer:
    if mode == "ipvs":
        ipvs_sync.require_kernel()
        return IpvsSyncer(cfg, runner)
    if mode == "nftables":
        return NftablesSyncer(cfg, runner)
    backend = detect_backend() if iptables_backend == "auto" else iptables_backend
    log.info("iptables mode, %s backend", backend)
    return IptablesSyncer(cfg, backend, runner)


def render_text(mode: str, services: list[dict], slices: list[dict], cfg: Config) -> str:
    ports = service_ports(services, slices)
    if mode == "iptables":
        rs = iptables_render.render(ports, cfg)
        jumps = "".join(f"# ensured: iptables -t {t} -C {c} {r} || iptables -t {t} -I {c} 1 {r}\n"
                        for t, c, r in iptables_render.JUMPS)
        return jumps + iptables_render.restore_text(rs, "filter") + iptables_render.restore_text(rs, "nat")
    if mode == "nftables":
        return nftables_render.transaction(nftables_render.render(ports, cfg), None).text
    if mode == "ipvs":
        return ipvs_render.describe(ports, cfg)
    raise SystemExit(f"netlab-proxy: --mode {mode!r} is not one of {', '.join(MODES)}")


def cleanup_all(runner: Runner | None = None) -> None:
    """Remove the rules of every mode and iptables backend."""
    for backend in ("legacy", "nft"):
        try:
            IptablesSyncer(Config(), backend, runner).cleanup()
        except (OSError, SyncError):  # that backend's tools are not installed
            pass
    NftablesSyncer(Config(), runner).cleanup()
    IpvsSyncer(Config(), runner, backend="nft").cleanup()
