"""Packets with scapy inside a namespace: send from one, sniff in another.

scapy reads the interfaces and routes of the namespace it starts in, so each send or sniff runs
in a forked child that enters the namespace first and then reloads scapy's view of it.

    with Sniffer("lab-pod-b", "eth0", "udp port 9999") as sniffer:
        send("lab-pod-a", IP(dst="10.244.1.5") / UDP(dport=9999) / b"hi")
    packets = sniffer.packets          # scapy Ether packets seen in pod b
"""

from __future__ import annotations

import os
import select
import time
from typing import Any

from netlab.kit import net


def _scapy_in(ns: str | None) -> Any:
    if ns:
        net.setns(ns)
    from scapy import all as scapy

    scapy.conf.ifaces.reload()
    scapy.conf.route.resync()
    return scapy


def send(ns: str | None, packet: Any, count: int = 1, iface: str | None = None) -> None:
    """Send an IP packet (layer 3, routed by the namespace's table) or, with `iface`, a frame."""
    def _send(raw: bytes, l2: bool) -> None:
        scapy = _scapy_in(None)
        if l2:
            scapy.sendp(scapy.Ether(raw), iface=iface, count=count, verbose=False)
        else:
            scapy.send(scapy.IP(raw), count=count, verbose=False)

    net.call_in(ns, _send, bytes(packet), iface is not None) if ns else _send(bytes(packet), iface is not None)


class Sniffer:
    """Capture frames on `iface` in namespace `ns` with a BPF `bpf` filter, from entering the
    `with` block until `count` packets were seen or `timeout` seconds passed after leaving it."""

    def __init__(self, ns: str | None, iface: str, bpf: str = "", count: int = 1, timeout: float = 3.0):
        self.ns, self.iface, self.bpf, self.count, self.timeout = ns, iface, bpf, count, timeout
        self.packets: list[Any] = []

    def __enter__(self) -> Sniffer:
        r_ready, w_ready = os.pipe()
        self._r_out, w_out = os.pipe()
        self._pid = os.fork()
        if self._pid == 0:
            os.close(r_ready)
            os.close(self._r_out)
            try:
                scapy = _scapy_in(self.ns)
                sock = scapy.conf.L2listen(iface=self.iface, filter=self.bpf or None)
                os.write(w_ready, b"1")
                end, seen = time.monotonic() + 60, 0
                while seen < self.count and time.monotonic() < end:
                    if select.select([sock], [], [], 0.1)[0]:
                        pkt = sock.recv()
                        if pkt is not None:  # each frame goes to the parent as it arrives
                            raw = bytes(pkt)
                            os.write(w_out, len(raw).to_bytes(4, "big") + raw)
                            seen += 1
            finally:
                os._exit(0)
        os.close(w_ready)
        os.close(w_out)
        ready = select.select([r_ready], [], [], 15)[0]
        os.close(r_ready)
        if not ready:
            self._stop()
            raise TimeoutError(f"sniffer on {self.iface} in {self.ns} did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        data = b""
        end = time.monotonic() + self.timeout
        while self._frames(data) < self.count and time.monotonic() < end:
            if not select.select([self._r_out], [], [], max(0.0, end - time.monotonic()))[0]:
                break
            chunk = os.read(self._r_out, 1 << 20)
            if not chunk:
                break
            data += chunk
        self._stop()
        from scapy.layers import inet  # noqa: F401 - binds IP, TCP, UDP and ICMP under Ether
        from scapy.layers.l2 import Ether

        while len(data) >= 4:
            n = int.from_bytes(data[:4], "big")
            if len(data) < 4 + n:
                break
            self.packets.append(Ether(data[4:4 + n]))
            data = data[4 + n:]

    @staticmethod
    def _frames(data: bytes) -> int:
        count = 0
        while len(data) >= 4 and len(data) >= 4 + int.from_bytes(data[:4], "big"):
            data = data[4 + int.from_bytes(data[:4], "big"):]
            count += 1
        return count

    def _stop(self) -> None:
        try:
            os.kill(self._pid, 9)
        except ProcessLookupError:
            pass
        os.waitpid(self._pid, 0)
        os.close(self._r_out)
