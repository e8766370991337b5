"""PodSecurity admission, as upstream's: a namespace's pod-security.kubernetes.io/enforce, warn
and audit labels name a level (privileged, baseline, restricted); a pod that violates the
enforced level is refused with upstream's words (`violates PodSecurity "restricted:latest":
privileged (container "c" must not set securityContext.privileged=true), ...`), one that
violates the warned level gets a Warning. The checks are the Pod Security Standards'."""

from __future__ import annotations

LABEL = "pod-security.kubernetes.io/"
LEVELS = ("privileged", "baseline", "restricted")
BASELINE_CAPS = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
                 "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}
SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
                "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
                "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
                "net.ipv4.tcp_keepalive_probes"}
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                      "projected", "secret"}


def _containers(spec: dict) -> list[dict]:
    return (spec.get("initContainers") or []) + (spec.get("containers") or []) + \
        (spec.get("ephemeralContainers") or [])


def _quote(names: list[str], what: str = "container") -> str:
    names = list(dict.fromkeys(names))
    plural = what + "s" if len(names) > 1 else what
    return f'{plural} {", ".join(chr(34) + n + chr(34) for n in names)}'


def baseline(spec: dict) -> list[str]:
    out: list[str] = []
    cs = _containers(spec)
    host = [f for f in ("hostNetwork", "hostPID", "hostIPC") if spec.get(f)]
    if host:
        out.append(f"host namespaces ({', '.join(f'{f}=true' for f in host)})")
    priv = [c["name"] for c in cs if (c.get("securityContext") or {}).get("privileged")]
    if priv:
        out.append(f"privileged ({_quote(priv)} must not set securityContext.privileged=true)")
    caps: dict[str, list[str]] = {}
    for c in cs:
        for cap in ((c.get("securityContext") or {}).get("capabilities") or {}).get("add") or []:
            if cap not in BASELINE_CAPS:
                caps.setdefault(c["name"], []).append(cap)
    if caps:
        added = sorted({cap for v in caps.values() for cap in v})
        out.append(f"non-default capabilities ({_quote(list(caps))} must not include "
                   f"{', '.join(chr(34) + a + chr(34) for a in added)} in securityContext.capabilities.add)")
    hp = [v["name"] for v in spec.get("volumes") or [] if "hostPath" in v]
    if hp:
        out.append(f"hostPath volumes ({_quote(hp, 'volume')})")
    ports = [str(p["hostPort"]) for c in cs for p in c.get("ports") or [] if p.get("hostPort")]
    if ports:
        names = [c["name"] for c in cs if any(p.get("hostPort") for p in c.get("ports") or [])]
        out.append(f"hostPort ({_quote(names)} uses {'hostPorts' if len(ports) > 1 else 'hostPort'} "
                   f"{', '.join(ports)})")
    unconf = ["pod"] if ((spec.get("securityContext") or {}).get("seccompProfile") or {}).get("type") == "Unconfined" \
        else []
    unconf += [c["name"] for c in cs if ((c.get("securityContext") or {}).get("seccompProfile") or {}).get("type")
               == "Unconfined"]
    if unconf:
        out.append('seccompProfile (' + ('pod' if unconf[0] == "pod" and len(unconf) == 1 else
                   _quote([n for n in unconf if n != "pod"])) + ' must not set securityContext.seccompProfile.type '
                   'to "Unconfined")')
    bad = [s["name"] for s in (spec.get("securityContext") or {}).get("sysctls") or [] if s["name"] not in SAFE_SYSCTLS]
    if bad:
        out.append(f"forbidden sysctls ({', '.join(bad)})")
    return out


def restricted(spec: dict) -> list[str]:
    out = baseline(spec)
    cs = _containers(spec)
    vols = [(v["name"], next((k for k in v if k != "name"), "")) for v in spec.get("volumes") or []]
    bad = [(n, k) for n, k in vols if k not in RESTRICTED_VOLUMES and k != "hostPath"]
    if bad:
        out.append(f"restricted volume types ({_quote([n for n, _ in bad], 'volume')} "
                   f"{'use' if len(bad) > 1 else 'uses'} restricted volume "
                   f"{'types' if len(bad) > 1 else 'type'} {', '.join(chr(34) + k + chr(34) for _, k in bad)})")
    esc = [c["name"] for c in cs if (c.get("securityContext") or {}).get("allowPrivilegeEscalation") is not False]
    if esc:
        out.append(f"allowPrivilegeEscalation != false ({_quote(esc)} must set "
                   "securityContext.allowPrivilegeEscalation=false)")
    drop = [c["name"] for c in cs if "ALL" not in (((c.get("securityContext") or {}).get("capabilities") or {})
                                                    .get("drop") or [])]
    add = [c["name"] for c in cs if set(((c.get("securityContext") or {}).get("capabilities") or {}).get("add") or [])
           - {"NET_BIND_SERVICE"}]
    if drop or add:
        parts = []
        if drop:
            parts.append(f'{_quote(drop)} must set securityContext.capabilities.drop=["ALL"]')
        if add:
            parts.append(f'{_quote(add)} must not include capabilities beyond "NET_BIND_SERVICE" in '
                         'securityContext.capabilities.add')
        out.append(f"unrestricted capabilities ({'; '.join(parts)})")
    psc = spec.get("securityContext") or {}
    non_root = [c["name"] for c in cs if (c.get("securityContext") or {}).get("runAsNonRoot",
                                                                             psc.get("runAsNonRoot")) is not True]
    if non_root:
        who = f"pod or {_quote(non_root)}" if psc.get("runAsNonRoot") is not False else _quote(non_root)
        out.append(f"runAsNonRoot != true ({who} must set securityContext.runAsNonRoot=true)")
    root = [c["name"] for c in cs if (c.get("securityContext") or {}).get("runAsUser") == 0]
    if psc.get("runAsUser") == 0 or root:
        out.append(f"runAsUser=0 ({'pod' if psc.get('runAsUser') == 0 else _quote(root)} must not set runAsUser=0)")
    pod_sc = (psc.get("seccompProfile") or {}).get("type")
    sc = [c["name"] for c in cs if ((c.get("securityContext") or {}).get("seccompProfile") or {}).get("type", pod_sc)
          not in ("RuntimeDefault", "Localhost")]
    if sc:
        out.append(f'seccompProfile (pod or {_quote(sc)} must set securityContext.seccompProfile.type to '
                   '"RuntimeDefault" or "Localhost")')
    return out


def level(ns_labels: dict, mode: str) -> str:
    val = ns_labels.get(LABEL + mode, "privileged")
    return val if val in LEVELS else "restricted"  # upstream: an unknown level is the most restrictive


def violations(lvl: str, pod: dict) -> list[str]:
    spec = pod.get("spec") or {}
    return restricted(spec) if lvl == "restricted" else baseline(spec) if lvl == "baseline" else []


def check(ns: dict | None, pod: dict) -> tuple[str | None, list[str]]:
    """(the refusal's message or None, the warnings) for a pod created in namespace `ns`."""
    labels = ((ns or {}).get("metadata") or {}).get("labels") or {}
    if not any(k.startswith(LABEL) for k in labels):
        return None, []
    name = (pod.get("metadata") or {}).get("name") or (pod.get("metadata") or {}).get("generateName", "")
    enforce = level(labels, "enforce")
    version = labels.get(LABEL + "enforce-version", "latest")
    v = violations(enforce, pod)
    if v:
        return f'pods "{name}" is forbidden: violates PodSecurity "{enforce}:{version}": {", ".join(v)}', []
    warnings = []
    warn = level(labels, "warn")
    wv = violations(warn, pod)
    if wv:
        warnings.append(f'would violate PodSecurity "{warn}:{labels.get(LABEL + "warn-version", "latest")}": '
                        f'{", ".join(wv)}')
    return None, warnings
