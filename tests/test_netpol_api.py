"""NetworkPolicy through the API server, without a lab: the kind's defaults, validation and
kubectl columns as upstream has them, and the agent's informers rendering what it watches
(against the real API server on loopback, its nft runs recorded instead of made)."""

from __future__ import annotations

import argparse
import asyncio
import json

import pytest
import yaml

from netpol.agent import Agent
from tests.apikit import ControlPlane

POLICY = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: default}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
  - from: [{podSelector: {matchLabels: {role: client}}}]
    ports: [{port: 80}, {port: http, protocol: UDP}]
  egress:
  - to: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}}]
"""


@pytest.fixture(scope="module")
def cp():
    with ControlPlane("nltnetpol") as plane:
        yield plane


def test_defaults_columns_and_short_name(cp):
    cp.kubectl("apply", "-f", "-", input=POLICY)
    obj = json.loads(cp.kubectl("get", "netpol", "web", "-o", "json").stdout)
    assert obj["spec"]["policyTypes"] == ["Ingress", "Egress"]  # inferred: it has egress rules
    assert [p.get("protocol") for p in obj["spec"]["ingress"][0]["ports"]] == ["TCP", "UDP"]
    lines = cp.kubectl("get", "networkpolicies").stdout.splitlines()
    assert lines[0].split() == ["NAME", "POD-SELECTOR", "AGE"] and lines[1].split()[:2] == ["web", "app=web"]
    cp.kubectl("apply", "-f", "-", input=yaml.safe_dump({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "deny"},
        "spec": {"podSelector": {}}}))
    deny = json.loads(cp.kubectl("get", "netpol", "deny", "-o", "json").stdout)
    assert deny["spec"]["policyTypes"] == ["Ingress"]
    assert cp.kubectl("get", "netpol", "deny").stdout.splitlines()[1].split()[:2] == ["deny", "<none>"]
    cp.kubectl("delete", "netpol", "web", "deny")


@pytest.mark.parametrize("spec, message", [
    ({"ingress": [{"ports": [{"port": 80, "endPort": 79}]}]},
     "spec.ingress[0].ports[0].endPort: Invalid value: 79: must be greater than or equal to `port`"),
    ({"ingress": [{"ports": [{"endPort": 79}]}]},
     "spec.ingress[0].ports[0].endPort: Invalid value: 79: may not be specified when `port` is not specified"),
    ({"egress": [{"ports": [{"port": "http", "endPort": 90}]}]},
     "spec.egress[0].ports[0].endPort: Invalid value: 90: may not be specified when `port` is non-numeric"),
    ({"ingress": [{"ports": [{"port": 0}]}]},
     "spec.ingress[0].ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"),
    ({"ingress": [{"ports": [{"port": "no_such"}]}]},
     'spec.ingress[0].ports[0].port: Invalid value: "no_such": must contain only alpha-numeric characters (a-z, 0-9), '
     "and hyphens (-)"),
    ({"ingress": [{"ports": [{"protocol": "ICMP"}]}]},
     'spec.ingress[0].ports[0].protocol: Unsupported value: "ICMP": supported values: "TCP", "UDP", "SCTP"'),
    ({"ingress": [{"from": [{}]}]}, "spec.ingress[0].from[0]: Required value: must specify a peer"),
    ({"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]}]},
     "spec.egress[0].to[0]: Forbidden: may not specify both ipBlock and another peer"),
    ({"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/33"}}]}]},
     'spec.ingress[0].from[0].ipBlock.cidr: Invalid value: "10.0.0.0/33": must be a valid CIDR value, '
     "(e.g. 10.9.8.0/24 or 2001:db8::/64)"),
    ({"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["11.0.0.0/16"]}}]}]},
     'spec.ingress[0].from[0].ipBlock.except[0]: Invalid value: "11.0.0.0/16": must be a strict subset of `cidr`'),
    ({"ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.0.0.0/8"]}}]}]},
     'spec.ingress[0].from[0].ipBlock.except[0]: Invalid value: "10.0.0.0/8": must be a strict subset of `cidr`'),
    ({"podSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}},
     "spec.podSelector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or "
     "'NotIn'"),
    ({"ingress": [{"from": [{"namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "Near"}]}}]}]},
     'spec.ingress[0].from[0].namespaceSelector.matchExpressions[0].operator: Invalid value: "Near": not a valid '
     "selector operator"),
    ({"policyTypes": ["Ingress", "Sideways"]},
     'spec.policyTypes[1]: Unsupported value: "Sideways": supported values: "Ingress", "Egress"'),
])
def test_validation_names_the_field_as_upstream(cp, spec, message):
    obj = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "bad"},
           "spec": {"podSelector": {}, **spec}}
    r = cp.kubectl("apply", "-f", "-", input=yaml.safe_dump(obj), check=False)
    assert r.returncode != 0 and message in r.stderr, r.stderr


def test_the_agent_renders_what_it_watches(cp):
    args = argparse.Namespace(kubeconfig=str(cp.kubeconfig), hostname_override="worker", pod_cidr="10.244.1.0/24",
                              log_drops=False, min_sync_period=0.05, sync_period=30.0, metrics_bind_address="")

    class Recorder:
        """A syncer that keeps what it would program."""
        def __init__(self):
            self.texts: list[str] = []

        @property
        def applied(self) -> str | None:
            return self.texts[-1] if self.texts else None

        def sync(self, text: str, force: bool = False) -> bool:
            if self.texts and self.texts[-1] == text and not force:
                return False
            self.texts.append(text)
            return True

        def present(self) -> bool:
            return True

    rec = Recorder()
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-0", "labels": {"app": "web"}},
           "spec": {"nodeName": "worker", "containers": [{"name": "c", "image": "agnhost",
                                                         "ports": [{"name": "http", "containerPort": 8080}]}]}}

    async def scenario():
        agent = Agent(args, syncer=rec, prepare=False)
        task = asyncio.create_task(agent.run())

        async def until(pred, what):
            for _ in range(100):
                if rec.texts and pred(rec.texts[-1]):
                    return
                await asyncio.sleep(0.05)
            raise AssertionError(f"the agent never rendered {what}: {rec.texts[-1:]}")
        try:
            await until(lambda t: "table inet netlab-netpol" in t, "its table")
            created = await agent.client.create("pods", pod, "default")
            created["status"] = {"phase": "Running", "podIP": "10.244.1.7", "podIPs": [{"ip": "10.244.1.7"}]}
            await agent.client.update("pods", created, subresource="status")
            await agent.client.create("networkpolicies", yaml.safe_load(POLICY), "default")
            await until(lambda t: "goto pod-ingress-default/web-0" in t, "the pod isolated")
            text = rec.texts[-1]
            assert "10.244.1.7 . udp . 8080" not in text  # the named port is TCP on the pod
            n = len(rec.texts)
            # a change that cannot alter a rule (a condition) does not make a sync
            cur = await agent.client.get("pods", "web-0", "default")
            cur["status"]["conditions"] = [{"type": "Ready", "status": "True"}]
            await agent.client.update("pods", cur, subresource="status")
            await asyncio.sleep(0.5)
            assert len(rec.texts) == n
            await agent.client.delete("networkpolicies", "web", "default")
            await until(lambda t: "pod-ingress-default/web-0" not in t, "the policy gone")
        finally:
            task.cancel()
            await agent.client.delete("pods", "web-0", "default", grace_period_seconds=0)
            await agent.client.close()
    asyncio.run(scenario())
