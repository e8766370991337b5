"""A container's log relay (conmon, or containerd's shim, on a real node): a fork of the node's
spawner that copies the container's output to its log in the CRI format (`<RFC3339Nano time>
stdout|stderr F|P <line>`, what the kubelet serves with timestamps and sinceSeconds), holding an
flock on the log until the container's last writer is gone (so a reader knows the log is
complete); it outlives a restart of the spawner.

It also serves the container's attach socket (the kubelet's /attach): every client gets the
output from then on, and what a client sends reaches the container's stdin, which the relay
holds open for a container with `stdin: true` (a pipe; with `tty: true` the terminal's master,
whose size a client sets). With `stdinOnce` the stdin closes when the first client goes.

Frames on the attach socket, both ways: one byte for the stream (0 stdin, 1 stdout, 2 stderr,
4 a terminal resize as {"Width", "Height"}, 255 the end of stdin), four for the length, the data.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import selectors
import signal
import socket
import struct
import termios
import time

import setproctitle

FRAME = struct.Struct("!BI")
STDIN, STDOUT, STDERR, RESIZE, CLOSE = 0, 1, 2, 4, 255
MAX_LINE = 16 * 1024  # a longer line is logged in parts (P), as containerd does
NAMES = {b"stdout": STDOUT, b"stderr": STDERR}


def stamp(ns: int) -> bytes:
    """RFC3339Nano in UTC, as Go formats it (trailing zeros of the fraction dropped)."""
    frac = f"{ns % 1_000_000_000:09d}".rstrip("0")
    return (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000)) + (f".{frac}" if frac else "")
            + "Z").encode()


def frame(stream: int, data: bytes) -> bytes:
    return FRAME.pack(stream, len(data)) + data


def frames(buf: bytearray) -> list[tuple[int, bytes]]:
    """The whole frames at the start of `buf`, taken out of it."""
    out = []
    while len(buf) >= FRAME.size:
        stream, n = FRAME.unpack_from(buf)
        if len(buf) < FRAME.size + n:
            break
        out.append((stream, bytes(buf[FRAME.size:FRAME.size + n])))
        del buf[:FRAME.size + n]
    return out


class Relay:
    def __init__(self, streams: dict[int, bytes], log: int, stdin: int | None = None, tty: int | None = None,
                 listener: socket.socket | None = None, stdin_once: bool = False):
        self.streams, self.log, self.stdin, self.tty = streams, log, stdin, tty
        self.listener, self.stdin_once = listener, stdin_once
        self.partial = dict.fromkeys(streams, b"")
        self.clients: dict[socket.socket, bytearray] = {}
        self.sel: selectors.BaseSelector | None = None  # made in the relay's process

    def run(self) -> None:
        self.sel = selectors.DefaultSelector()
        for fd in self.streams:
            self.sel.register(fd, selectors.EVENT_READ, "output")
        if self.listener is not None:
            self.sel.register(self.listener, selectors.EVENT_READ, "listen")
        while self.streams:
            for key, _ in self.sel.select():
                if key.data == "output":
                    self.output(key.fd)
                elif key.data == "listen":
                    self.accept()
                else:
                    self.client(key.fileobj)
        for c in list(self.clients):  # the container is done: so are its attach streams
            self.drop(c)

    def output(self, fd: int) -> None:
        try:
            data = os.read(fd, 65536)
        except OSError:  # EIO: a terminal's last writer is gone
            data = b""
        ts, name = stamp(time.time_ns()), self.streams[fd]
        if not data:  # the last writer is gone: what is left is a full line, as containerd logs it
            self.sel.unregister(fd)
            del self.streams[fd]
            lines, self.partial[fd] = ([self.partial[fd]] if self.partial[fd] else []), b""
        else:
            lines = (self.partial[fd] + data).split(b"\n")
            self.partial[fd] = lines.pop()
            for c in list(self.clients):
                try:
                    c.sendall(frame(NAMES[name], data))
                except OSError:
                    self.drop(c)
        out = [b"%s %s F %s\n" % (ts, name, line.rstrip(b"\r") if self.tty else line) for line in lines]
        while len(self.partial[fd]) >= MAX_LINE:
            out.append(b"%s %s P %s\n" % (ts, name, self.partial[fd][:MAX_LINE]))
            self.partial[fd] = self.partial[fd][MAX_LINE:]
        buf = memoryview(b"".join(out))
        while buf:
            buf = buf[os.write(self.log, buf):]

    def accept(self) -> None:
        try:
            c, _ = self.listener.accept()
        except OSError:
            return
        c.settimeout(2)
        self.clients[c] = bytearray()
        self.sel.register(c, selectors.EVENT_READ, "client")

    def client(self, c: socket.socket) -> None:
        try:
            data = c.recv(65536)
        except OSError:
            data = b""
        if not data:
            self.drop(c)
            return
        buf = self.clients[c]
        buf += data
        for stream, payload in frames(buf):
            target = self.tty if self.tty is not None else self.stdin
            if stream == STDIN and target is not None and payload:
                with contextlib.suppress(OSError):
                    os.write(target, payload)
            elif stream == RESIZE and self.tty is not None:
                with contextlib.suppress(ValueError, OSError, KeyError):
                    size = json.loads(payload)
                    fcntl.ioctl(self.tty, termios.TIOCSWINSZ, struct.pack("HHHH", size["Height"], size["Width"], 0, 0))
            elif stream == CLOSE and payload[:1] == bytes([STDIN]):
                self.close_stdin()

    def drop(self, c: socket.socket) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(c)
        self.clients.pop(c, None)
        c.close()
        if self.stdin_once:
            self.close_stdin()

    def close_stdin(self) -> None:
        if self.stdin is not None and self.tty is None:
            os.close(self.stdin)
            self.stdin = None


def run(relay: Relay, keep: set[int]) -> None:
    """In the relay's fork: from the spawner's process to the relay, then serve. Never returns."""
    try:
        os.setsid()  # not in the spawner's process group: stopping the runtime leaves it running
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        signal.set_wakeup_fd(-1)
        setproctitle.setproctitle("netlab-log-relay")
        for fd in map(int, os.listdir("/proc/self/fd")):
            if fd > 2 and fd not in keep:
                with contextlib.suppress(OSError):
                    os.close(fd)
        relay.run()
    finally:
        if relay.listener is not None:
            with contextlib.suppress(OSError):
                os.unlink(relay.listener.getsockname())
        os._exit(0)
