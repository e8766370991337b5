"""The CNI protocol (spec 1.1, with 0.3.x/0.4.0/1.0.0 results): the call a plugin receives,
its result and error JSON, and the delegation of IPAM to another plugin.

Standard library only: a CNI call is a new process every time, so nothing slow is imported here.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

SUPPORTED = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
RESULT_VERSIONS = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]
COMMANDS = ("ADD", "DEL", "CHECK", "VERSION", "STATUS", "GC")

# The spec's well-known error codes.
INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENV = 4
IO_FAILURE = 5
DECODE_FAILURE = 6
INVALID_CONFIG = 7
TRY_AGAIN_LATER = 11
NOT_AVAILABLE = 50
INTERNAL = 999


class CNIError(Exception):
    def __init__(self, code: int, msg: str, details: str = ""):
        super().__init__(msg)
        self.code, self.msg, self.details = code, msg, details

    def to_json(self, version: str = "1.1.0") -> dict[str, Any]:
        out: dict[str, Any] = {"cniVersion": version, "code": self.code, "msg": self.msg}
        if self.details:
            out["details"] = self.details
        return out


def _vtuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))


class Call:
    """One invocation: the environment's CNI_* variables and the network configuration.
    (A plain class: dataclasses costs ~8 ms of imports, a lot for a process per call.)"""

    def __init__(self, command: str, container_id: str = "", netns: str = "", ifname: str = "",
                 args: dict[str, str] | None = None, path: list[str] | None = None,
                 config: dict[str, Any] | None = None, raw_config: bytes = b""):
        self.command, self.container_id, self.netns, self.ifname = command, container_id, netns, ifname
        self.args, self.path = args or {}, path or []
        self.config, self.raw_config = config or {}, raw_config

    def but(self, **changes: Any) -> Call:
        return Call(**{**self.__dict__, **changes})

    @property
    def version(self) -> str:
        return self.config.get("cniVersion", "0.1.0")

    def at_least(self, version: str) -> bool:
        return _vtuple(self.version) >= _vtuple(version)


def parse(env: dict[str, str], stdin: bytes) -> Call:
    """Validate the environment and configuration as the spec requires; raise CNIError."""
    command = env.get("CNI_COMMAND", "")
    if command not in COMMANDS:
        raise CNIError(INVALID_ENV, f"CNI_COMMAND {command!r} is not one of {', '.join(COMMANDS)}")
    call = Call(command=command)
    if command == "VERSION":
        return call
    required = {"ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
                "DEL": ("CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"),
                "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
                "STATUS": ("CNI_PATH",), "GC": ("CNI_PATH",)}[command]
    missing = [k for k in required if not env.get(k)]
    if missing:
        raise CNIError(INVALID_ENV, f"required env variables [{','.join(missing)}] missing")
    call.container_id = env.get("CNI_CONTAINERID", "")
    call.netns = env.get("CNI_NETNS", "")
    call.ifname = env.get("CNI_IFNAME", "")
    call.path = [p for p in env.get("CNI_PATH", "").split(":") if p]
    for kv in filter(None, env.get("CNI_ARGS", "").split(";")):
        k, sep, v = kv.partition("=")
        if not sep:
            raise CNIError(INVALID_ENV, f"CNI_ARGS: {kv!r} is not KEY=VALUE")
        call.args[k] = v
    if call.ifname and (len(call.ifname) > 15 or "/" in call.ifname or call.ifname in (".", "..")):
        raise CNIError(INVALID_ENV, f"CNI_IFNAME {call.ifname!r} is not a valid interface name (at most 15 characters)")
    call.raw_config = stdin
    try:
        call.config = json.loads(stdin or b"null")
    except ValueError as e:
        raise CNIError(DECODE_FAILURE, f"failed to decode network configuration: {e}") from None
    if not isinstance(call.config, dict):
        raise CNIError(DECODE_FAILURE, "network configuration must be a JSON object")
    for key in ("cniVersion", "name", "type"):
        if not isinstance(call.config.get(key), str) or not call.config[key]:
            raise CNIError(INVALID_CONFIG, f"network configuration: field {key!r} is required")
    if call.version not in SUPPORTED:
        raise CNIError(INCOMPATIBLE_VERSION, f"incompatible CNI versions; config is {call.version!r}, "
                       f"plugin supports {SUPPORTED}")
    if command == "CHECK" and not call.at_least("0.4.0"):
        raise CNIError(INCOMPATIBLE_VERSION, f"config version {call.version!r} does not allow CHECK (0.4.0 or later)")
    if command in ("STATUS", "GC") and not call.at_least("1.1.0"):
        raise CNIError(INCOMPATIBLE_VERSION, f"config version {call.version!r} does not allow {command} (1.1.0)")
    return call


def version_result(version: str = "1.1.0") -> dict[str, Any]:
    return {"cniVersion": version, "supportedVersions": SUPPORTED}


def convert(result: dict[str, Any], version: str) -> dict[str, Any]:
    """A result (kept internally in 1.x form) in the shape of `version`: 0.3.x/0.4.0 ips carry
    "version": "4"|"6", 1.x ones do not."""
    if version not in RESULT_VERSIONS:
        raise CNIError(INCOMPATIBLE_VERSION, f"cannot convert a result to version {version!r}")
    out = dict(result, cniVersion=version)
    ips = []
    for ip in result.get("ips", []):
        ip = {k: v for k, v in ip.items() if k != "version"}
        if _vtuple(version) < (1, 0, 0):
            ip = {"version": "6" if ":" in ip["address"] else "4", **ip}
        ips.append(ip)
    out["ips"] = ips
    return out


def upgrade(result: dict[str, Any] | None) -> dict[str, Any]:
    """A prevResult or IPAM result of any supported version in the internal 1.x form."""
    if not result:
        return {"ips": [], "routes": [], "interfaces": [], "dns": {}}
    out = dict(result)
    out["ips"] = [{k: v for k, v in ip.items() if k != "version"} for ip in result.get("ips", [])]
    out.setdefault("routes", [])
    out.setdefault("interfaces", [])
    out.setdefault("dns", {})
    return out


def find_plugin(name: str, path: list[str]) -> str:
    for d in path:
        exe = os.path.join(d, name)
        if os.path.isfile(exe) and os.access(exe, os.X_OK):
            return exe
    raise CNIError(INVALID_CONFIG, f"failed to find plugin {name!r} in path {path}")


def delegate(call: Call, plugin: str, env: dict[str, str], command: str | None = None,
             config: bytes | None = None) -> dict[str, Any] | None:
    """Run a delegated plugin (the IPAM) as the spec says: same environment, the same network
    configuration on stdin; its error is returned as ours."""
    import subprocess

    exe = find_plugin(plugin, call.path)
    run_env = dict(env, CNI_COMMAND=command or call.command)
    proc = subprocess.run([exe], input=config if config is not None else call.raw_config, env=run_env,
                          capture_output=True)
    out = proc.stdout.strip()
    if proc.returncode != 0:
        try:
            err = json.loads(out)
            raise CNIError(int(err.get("code", INTERNAL)), err.get("msg", ""), err.get("details", ""))
        except (ValueError, AttributeError):
            raise CNIError(INTERNAL, f"plugin {plugin} failed ({proc.returncode}): "
                           f"{(out or proc.stderr).decode(errors='replace').strip()}") from None
    return json.loads(out) if out else None


def respond(fn, env: dict[str, str] | None = None, stdin: bytes | None = None) -> int:
    """Run a plugin's handler `fn(call, env) -> result | None` and print its result or error.
    Returns the exit code."""
    env = dict(os.environ) if env is None else env
    stdin = sys.stdin.buffer.read() if stdin is None else stdin
    code, out = handle(fn, env, stdin)
    if out:
        sys.stdout.write(out)
        sys.stdout.flush()
    return code


def handle(fn, env: dict[str, str], stdin: bytes) -> tuple[int, str]:
    """(exit code, stdout) for one call: the result JSON, or the spec's error JSON and exit 1."""
    version = "1.1.0"
    try:
        if env.get("CNI_COMMAND") == "VERSION":
            try:
                version = json.loads(stdin or b"{}").get("cniVersion") or version
            except (ValueError, AttributeError):
                pass
            return 0, json.dumps(version_result(version if version in SUPPORTED else "1.1.0"))
        call = parse(env, stdin)
        version = call.version
        result = fn(call, env)
        return 0, json.dumps(result) if result is not None else ""
    except CNIError as e:
        return 1, json.dumps(e.to_json(version if version in SUPPORTED else "1.1.0"))
    except Exception as e:  # noqa: BLE001 - a plugin must always answer in the spec's shape
        return 1, json.dumps(CNIError(INTERNAL, f"{type(e).__name__}: {e}").to_json(
            version if version in SUPPORTED else "1.1.0"))
