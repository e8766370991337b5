"""Exec and attach as the kubelet serves them (`GET|POST /exec/{namespace}/{pod}/{container}?command=...`,
`/attach/...`), on the client's streams over WebSocket or SPDY (streams.py: stdin, stdout, stderr,
the final Status, terminal resizes). The command runs in the container's namespaces (its root among them), cgroup
and privileges, with the container's environment and working directory, as the runtime started
the container; with tty=true on a pseudo-terminal."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import pty
import signal
import struct
import termios
from collections.abc import Callable
from pathlib import Path

from netlab.node.kubelet import relay
from netlab.node.kubelet.streams import CLOSE, RESIZE, STDERR, STDIN, STDOUT


def environ(pid: int) -> dict[str, str]:
    env = {}
    with contextlib.suppress(OSError):
        for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
            k, sep, v = item.decode(errors="replace").partition("=")
            if sep:
                env[k] = v
    return env


def exit_status(code: int) -> dict:
    if code == 0:
        return {"metadata": {}, "status": "Success"}
    return {"metadata": {}, "status": "Failure", "message": f"command terminated with non-zero exit code: {code}",
            "reason": "NonZeroExitCode", "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]}}


async def serve(chans, command: list[str], want_stdin: bool, tty: bool, pid: int, env: dict[str, str] | None = None,
                enter: list[str] | None = None, preexec: Callable[[], None] | None = None) -> None:
    """Run `command` in the namespaces of process `pid` with `env` (default: the process's own),
    its streams on the client's channels (streams.py). `enter` is the argv prefix that gets it there
    (runtime.enter_argv: nsenter and the container's privileges), `preexec` what the new process
    does first (joining the container's cgroup)."""
    argv = [*(enter or ["nsenter", f"--target={pid}", "--net", "--uts", "--mount", f"--wd=/proc/{pid}/cwd", "--"]),
            *command]
    env = env if env is not None else environ(pid)
    loop = asyncio.get_running_loop()
    master = None
    if tty:
        master, slave = pty.openpty()

        def controlling_terminal():
            if preexec is not None:
                preexec()
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        proc = await asyncio.create_subprocess_exec(*argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                                                    preexec_fn=controlling_terminal)
        os.close(slave)
    else:
        proc = await asyncio.create_subprocess_exec(
            *argv, env=env, stdin=asyncio.subprocess.PIPE if want_stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, preexec_fn=preexec,
            start_new_session=True)  # its own process group, which goes with the client

    async def pump(reader, stream: int) -> None:
        while chunk := await reader():
            await chans.send(stream, chunk)

    if master is not None:
        out_q: asyncio.Queue[bytes] = asyncio.Queue()

        def readable():
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the terminal's last writer is gone
                data = b""
            if not data:
                loop.remove_reader(master)
            out_q.put_nowait(data)
        loop.add_reader(master, readable)
        pumps = [pump(out_q.get, STDOUT)]
    else:
        pumps = [pump(lambda: proc.stdout.read(65536), STDOUT), pump(lambda: proc.stderr.read(65536), STDERR)]
    outputs = asyncio.gather(*pumps)

    async def inputs() -> None:
        async for stream, data in chans.inputs():
            if stream == STDIN and data:
                if master is not None:
                    os.write(master, data)
                elif proc.stdin is not None:
                    proc.stdin.write(data)
                    with contextlib.suppress(ConnectionError):
                        await proc.stdin.drain()
            elif stream == RESIZE and master is not None:
                with contextlib.suppress(ValueError, OSError):
                    size = json.loads(data)
                    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", size["Height"], size["Width"], 0, 0))
            elif stream == CLOSE and data[:1] == bytes([STDIN]) and proc.stdin is not None:
                proc.stdin.close()
        if proc.returncode is None:  # the client went away: so does the command (nsenter and its child)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)

    reading = asyncio.create_task(inputs())
    try:
        with contextlib.suppress(ConnectionError):
            await outputs
        code = await proc.wait()
    finally:
        if master is not None:
            loop.remove_reader(master)
            os.close(master)
        reading.cancel()
    await chans.finish(exit_status(code))


async def attach(chans, socket_path: Path, want_stdin: bool, want: dict[int, bool]) -> None:
    """Attach the client's channels to a running container's stdio, through its log relay's attach
    socket (relay.py): its output from now on on the stdout and stderr streams the client asked for
    (`want`), the client's stdin (and terminal resizes) to it; the final Status once the
    container's output ends."""
    try:
        reader, writer = await asyncio.open_unix_connection(str(socket_path))
    except OSError as e:
        await chans.finish({"metadata": {}, "status": "Failure", "message": f"cannot attach: {e.strerror}"})
        return

    async def outputs() -> None:
        while True:
            try:
                head = await reader.readexactly(relay.FRAME.size)
                stream, n = relay.FRAME.unpack(head)
                data = await reader.readexactly(n)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            if want.get(stream):
                await chans.send(stream, data)

    async def inputs() -> None:
        async for stream, data in chans.inputs():
            if stream == STDIN and want_stdin and data:
                writer.write(relay.frame(relay.STDIN, data))
            elif stream == RESIZE:
                writer.write(relay.frame(relay.RESIZE, data))
            elif stream == CLOSE and data[:1] == bytes([STDIN]):
                writer.write(relay.frame(relay.CLOSE, data[:1]))
            with contextlib.suppress(ConnectionError):
                await writer.drain()

    reading = asyncio.create_task(inputs())
    try:
        # the container's output ended, or the client went: so does the attach
        await asyncio.wait([asyncio.create_task(outputs()), reading], return_when=asyncio.FIRST_COMPLETED)
    finally:
        reading.cancel()
        writer.close()
    with contextlib.suppress(ConnectionError):
        await chans.finish(exit_status(0))
