"""Which speakers are alive, as MetalLB learns it from memberlist: each speaker sends a small
heartbeat over the node network to every other node's speaker (UDP, memberlist's port 7946)
and counts a peer alive while it has heard from it within SUSPECT seconds. A node whose link is
down neither sends nor hears, so the others count it gone within seconds, and it counts itself
out until it is back and has heard from its peers again (so it never claims an address alone)."""

from __future__ import annotations

import json
import socket
import time

PORT = 7946
INTERVAL = 0.3   # seconds between heartbeats
SUSPECT = 1.5    # a peer unheard for this long is gone
REJOIN = 1.0     # after start or a link back up: listen this long before counting oneself in


class Memberlist:
    def __init__(self, me: str, port: int = PORT):
        self.me, self.port = me, port
        self.seen: dict[str, float] = {}
        self.peers: dict[str, str] = {}     # node -> its address
        self.ready_at = time.monotonic() + REJOIN
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("0.0.0.0", port))
        self.sock.setblocking(False)
        self.last_sent = 0.0

    def fileno(self) -> int:
        return self.sock.fileno()

    def link_changed(self, up: bool) -> None:
        if up:
            self.ready_at = time.monotonic() + REJOIN
        else:
            self.seen.clear()

    def beat(self) -> None:
        """A heartbeat to every peer, at most every INTERVAL."""
        now = time.monotonic()
        if now - self.last_sent < INTERVAL:
            return
        self.last_sent = now
        msg = json.dumps({"node": self.me}).encode()
        for node, ip in self.peers.items():
            if node != self.me:
                try:
                    self.sock.sendto(msg, (ip, self.port))
                except OSError:  # unreachable (our link is down): nobody hears us
                    pass

    def read(self) -> None:
        while True:
            try:
                data, _ = self.sock.recvfrom(2048)
            except BlockingIOError:
                return
            try:
                node = json.loads(data)["node"]
            except (ValueError, KeyError, TypeError):
                continue
            if node in self.peers:
                self.seen[node] = time.monotonic()

    def alive(self, link_up: bool) -> set[str]:
        now = time.monotonic()
        out = {n for n, t in self.seen.items() if now - t < SUSPECT}
        if link_up and now >= self.ready_at:
            out.add(self.me)
        return out

    def close(self) -> None:
        self.sock.close()
