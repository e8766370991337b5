"""The kubelet's container environment and $(VAR) expansion, as upstream's kubelet makes them
(unit tests: no kernel; tests/test_batch_env_lab.py runs them in a lab)."""

import pytest

from netlab.node.kubelet import runtime
from netlab.node.kubelet.expansion import expand, expand_all

ENV = {"VAR_A": "A", "VAR_B": "B", "VAR_EMPTY": ""}


@pytest.mark.parametrize("value,want", [
    ("$(VAR_A)", "A"),
    ("___$(VAR_B)___", "___B___"),
    ("$(VAR_A)-$(VAR_B)", "A-B"),
    ("$(VAR_EMPTY)", ""),
    ("$(UNKNOWN)", "$(UNKNOWN)"),            # not defined: kept as written
    ("$$(VAR_A)", "$(VAR_A)"),               # escaped reference
    ("$$$(VAR_A)", "$A"),                    # an escaped $ then a reference
    ("$$$$(VAR_A)", "$$(VAR_A)"),
    ("$VAR_A", "$VAR_A"),                    # not the syntax
    ("$(VAR_A", "$(VAR_A"),                  # never closed
    ("$(VAR_A)$", "A$"),                     # a trailing $
    ("$()", "$()"),
    ("price: 5$", "price: 5$"),
    ("$$", "$"),
])
def test_expansion_as_upstreams(value, want):
    assert expand(value, ENV) == want


def test_command_and_args_are_expanded_item_by_item_and_none_stays_none():
    assert expand_all(["echo", "$(VAR_A)", "$$(VAR_B)"], ENV) == ["echo", "A", "$(VAR_B)"]
    assert expand_all(None, ENV) is None


def pod(**spec):
    return {"metadata": {"name": "p", "namespace": "ns", "uid": "u-1",
                         "labels": {"app": "web", "batch.kubernetes.io/job-completion-index": "3"},
                         "annotations": {"batch.kubernetes.io/job-completion-index": "3", "team": "net"}},
            "spec": {"nodeName": "worker", "serviceAccountName": "builder", **spec,
                     "containers": [{"name": "c", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"},
                                                                "limits": {"memory": "128Mi"}}}]}}


def field(path):
    return {"valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": path}}}


def test_downward_api_fields_in_env():
    container = {"name": "c", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}},
                 "env": [
                     {"name": "IDX", **field("metadata.annotations['batch.kubernetes.io/job-completion-index']")},
                     {"name": "IDX_LABEL", **field("metadata.labels['batch.kubernetes.io/job-completion-index']")},
                     {"name": "APP", **field("metadata.labels['app']")},
                     {"name": "MISSING", **field("metadata.labels['nope']")},
                     {"name": "SA", **field("spec.serviceAccountName")},
                     {"name": "HOST_IPS", **field("status.hostIPs")},
                     {"name": "POD_IPS", **field("status.podIPs")},
                     {"name": "POD_IP", **field("status.podIP")},
                     {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1m"}}},
                     {"name": "MEM_LIMIT", "valueFrom": {"resourceFieldRef": {"containerName": "c",
                                                                              "resource": "limits.memory",
                                                                              "divisor": "1Mi"}}},
                     {"name": "GREETING", "value": "index $(IDX) of $(APP), $$(IDX) literal, $(NOPE) kept"},
                 ]}
    env = runtime.container_env(pod(), container, [], "172.18.0.3", ["10.244.1.5", "fd00:10:244:1::5"], {}, {})
    assert env["IDX"] == "3" and env["IDX_LABEL"] == "3" and env["APP"] == "web" and env["MISSING"] == ""
    assert env["SA"] == "builder"
    assert env["HOST_IPS"] == "172.18.0.3"
    assert env["POD_IPS"] == "10.244.1.5,fd00:10:244:1::5" and env["POD_IP"] == "10.244.1.5"
    assert env["CPU"] == "250" and env["MEM_LIMIT"] == "128"
    assert env["GREETING"] == "index 3 of web, $(IDX) literal, $(NOPE) kept"


def test_a_single_pod_ip_still_reads_as_one():
    env = runtime.container_env(pod(), {"name": "c", "env": [{"name": "IPS", **field("status.podIPs")}]}, [],
                                "172.18.0.3", "10.244.1.5", {}, {})
    assert env["IPS"] == "10.244.1.5"
