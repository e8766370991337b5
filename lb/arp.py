"""ARP on one interface, as MetalLB's responder does it: a raw packet socket that reads every ARP
request and answers those for the addresses being announced with the interface's MAC, and
gratuitous ARP (a request and a reply, broadcast) when a node takes an address over, so that
neighbours' caches move to it at once."""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

ETH_P_ARP = 0x0806
BROADCAST = b"\xff" * 6
REQUEST, REPLY = 1, 2


def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", ""))


def mac_text(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


@dataclass(frozen=True)
class Arp:
    op: int
    sender_mac: bytes
    sender_ip: str
    target_mac: bytes
    target_ip: str
    eth_dst: bytes = BROADCAST


def frame(eth_src: bytes, a: Arp) -> bytes:
    """An Ethernet frame carrying an IPv4-over-Ethernet ARP packet."""
    return (a.eth_dst + eth_src + struct.pack("!H", ETH_P_ARP)
            + struct.pack("!HHBBH", 1, 0x0800, 6, 4, a.op)
            + a.sender_mac + socket.inet_aton(a.sender_ip) + a.target_mac + socket.inet_aton(a.target_ip))


def parse(data: bytes) -> Arp | None:
    """An IPv4-over-Ethernet ARP packet from an Ethernet frame, or None."""
    if len(data) < 42 or data[12:14] != b"\x08\x06":
        return None
    htype, ptype, hlen, plen, op = struct.unpack("!HHBBH", data[14:22])
    if (htype, ptype, hlen, plen) != (1, 0x0800, 6, 4):
        return None
    return Arp(op, data[22:28], socket.inet_ntoa(data[28:32]), data[32:38], socket.inet_ntoa(data[38:42]),
               data[0:6])


def reply_to(req: Arp, mac: bytes) -> Arp:
    """`req.target_ip is-at mac`, to the asker."""
    return Arp(REPLY, mac, req.target_ip, req.sender_mac, req.sender_ip, eth_dst=req.sender_mac)


def gratuitous(ip: str, mac: bytes) -> list[Arp]:
    """The request and the reply MetalLB broadcasts for an address it takes over."""
    return [Arp(op, mac, ip, BROADCAST, ip) for op in (REQUEST, REPLY)]


class Responder:
    """The raw socket on one interface (in the caller's network namespace)."""

    def __init__(self, ifname: str, mac: str):
        self.ifname, self.mac = ifname, mac_bytes(mac)
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
        self.sock.bind((ifname, ETH_P_ARP))
        self.sock.setblocking(False)

    def fileno(self) -> int:
        return self.sock.fileno()

    def read(self) -> list[Arp]:
        """The ARP requests waiting on the socket, for this machine or broadcast."""
        out = []
        while True:
            try:
                data = self.sock.recv(2048)
            except BlockingIOError:
                return out
            a = parse(data)
            if a and a.op == REQUEST and a.eth_dst in (BROADCAST, self.mac):
                out.append(a)

    def send(self, a: Arp) -> None:
        try:
            self.sock.send(frame(self.mac, a))
        except OSError:  # the link is down: nobody to tell
            pass

    def close(self) -> None:
        self.sock.close()
