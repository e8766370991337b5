"""CNI as a container runtime calls it: the node's conflist run in order for ADD (each plugin given
the previous result), in reverse for DEL, and CHECK; runtime capabilities (portMappings) passed
in runtimeConfig, as containerd and CRI-O do."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any


class CNIError(Exception):
    pass


class CNI:
    def __init__(self, conflist: Path, path: str):
        self.conflist_path, self.path = conflist, path

    def conflist(self) -> dict[str, Any]:
        return json.loads(self.conflist_path.read_text())

    async def _exec(self, plugin: dict, command: str, env: dict[str, str], prev: dict | None,
                    runtime: dict[str, Any]) -> dict | None:
        cl = self.conflist()
        conf = dict(plugin, cniVersion=cl["cniVersion"], name=cl["name"])
        caps = [c for c, on in (plugin.get("capabilities") or {}).items() if on and c in runtime]
        if caps:
            conf["runtimeConfig"] = {c: runtime[c] for c in caps}
        if prev is not None:
            conf["prevResult"] = prev
        exe = next((os.path.join(d, plugin["type"]) for d in self.path.split(":")
                    if os.access(os.path.join(d, plugin["type"]), os.X_OK)), None)
        if exe is None:
            raise CNIError(f"failed to find plugin {plugin['type']!r} in path {self.path}")
        proc = await asyncio.create_subprocess_exec(exe, stdin=asyncio.subprocess.PIPE,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                    env={**os.environ, **env, "CNI_COMMAND": command,
                                                         "CNI_PATH": self.path})
        out, err = await proc.communicate(json.dumps(conf).encode())
        if proc.returncode != 0:
            try:
                msg = json.loads(out).get("msg", "")
            except ValueError:
                msg = (out or err).decode(errors="replace").strip()
            raise CNIError(f"plugin type=\"{plugin['type']}\" name=\"{cl['name']}\" failed ({command.lower()}): {msg}")
        return json.loads(out) if out.strip() else None

    def env(self, pod: dict, netns: str) -> dict[str, str]:
        meta = pod["metadata"]
        return {"CNI_CONTAINERID": meta["uid"], "CNI_NETNS": netns, "CNI_IFNAME": "eth0",
                "CNI_ARGS": f"IgnoreUnknown=1;K8S_POD_NAMESPACE={meta['namespace']};K8S_POD_NAME={meta['name']};"
                            f"K8S_POD_INFRA_CONTAINER_ID={meta['uid']};K8S_POD_UID={meta['uid']}"}

    async def add(self, pod: dict, netns: str, runtime: dict[str, Any]) -> dict:
        prev = None
        env = self.env(pod, netns)
        try:
            for plugin in self.conflist()["plugins"]:
                prev = await self._exec(plugin, "ADD", env, prev, runtime) or prev
        except CNIError:
            try:  # a failed ADD is undone with DEL of the whole list, as runtimes do
                await self.delete(pod, netns, prev, runtime)
            except CNIError:
                pass
            raise
        if prev is None:
            raise CNIError("the network plugins returned no result")
        return prev

    async def delete(self, pod: dict, netns: str, result: dict | None, runtime: dict[str, Any]) -> None:
        env = self.env(pod, netns)
        for plugin in reversed(self.conflist()["plugins"]):
            await self._exec(plugin, "DEL", env, result, runtime)

    async def check(self, pod: dict, netns: str, result: dict, runtime: dict[str, Any]) -> None:
        env = self.env(pod, netns)
        for plugin in self.conflist()["plugins"]:
            await self._exec(plugin, "CHECK", env, result, runtime)


def port_mappings(pod: dict) -> list[dict]:
    """hostPort declarations as the portmap plugin's runtimeConfig wants them."""
    out = []
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("hostPort"):
                m = {"hostPort": p["hostPort"], "containerPort": p["containerPort"],
                     "protocol": p.get("protocol", "TCP").lower()}
                if p.get("hostIP"):
                    m["hostIP"] = p["hostIP"]
                out.append(m)
    return out
