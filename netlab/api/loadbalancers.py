"""What the service load-balancer controller and the lb-speaker agree on about a Service of type
LoadBalancer: whether it is the lab's to implement (no spec.loadBalancerClass, as the default
implementation takes them, or netlab's own class), and the addresses its status holds."""

from __future__ import annotations

LB_CLASS = "netlab.dev/l2"


def implemented_here(svc: dict | None, lb_class: str = LB_CLASS) -> bool:
    """A LoadBalancer Service that is ours: without a class, or with ours (a Service with another
    class is left to that class's implementation, as upstream's service controller leaves it)."""
    spec = (svc or {}).get("spec") or {}
    return spec.get("type") == "LoadBalancer" and spec.get("loadBalancerClass") in (None, "", lb_class)


def status_ips(svc: dict) -> list[str]:
    """status.loadBalancer.ingress[].ip."""
    return [i["ip"] for i in ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
            if i.get("ip")]
