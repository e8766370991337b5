"""netlab's pytest plugin (registered through the `pytest11` entry point).

Fixtures:
- `netlab_lab`: a session-wide running lab (netlab.tools.testing.Lab), torn down at the end of the
  session even when tests fail. Its size and name come from `--netlab-nodes` (default 3) and
  `--netlab-name` (default `nltplug`), its subnets from `--netlab-node-subnet` and
  `--netlab-pod-subnet` (default: the defaults, or free ones where another lab that is up holds
  them); it needs root, and is skipped without it.

    def test_service_answers(netlab_lab):
        netlab_lab.apply("examples/web.yaml")
        pod = netlab_lab.wait_ready("app=web", count=3)[0]
        assert netlab_lab.exec(pod, ["curl", "-s", "web:8080/hostname"]).stdout
"""

from __future__ import annotations

import os

import pytest


def pytest_addoption(parser):
    group = parser.getgroup("netlab")
    group.addoption("--netlab-nodes", type=int, default=3, help="nodes in the netlab_lab fixture's lab")
    group.addoption("--netlab-name", default="nltplug", help="name of the netlab_lab fixture's lab")
    group.addoption("--netlab-node-subnet", default=None, help="its node subnet (default 172.18.0.0/24, or a free one)")
    group.addoption("--netlab-pod-subnet", default=None, help="its pod subnet (default 10.244.0.0/16, or a free one)")


@pytest.fixture(scope="session")
def netlab_lab(request):
    if os.geteuid() != 0:
        pytest.skip("netlab_lab needs root: it makes network namespaces")
    from netlab.tools.testing import Lab

    opt = request.config.getoption
    networking = {k: v for k, v in (("nodeSubnet", opt("--netlab-node-subnet")),
                                    ("podSubnet", opt("--netlab-pod-subnet"))) if v}
    lab = Lab(opt("--netlab-name"), nodes=opt("--netlab-nodes"), **networking)
    with lab:
        yield lab


_LOG_MARKS = pytest.StashKey[dict]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A test that used the lab and failed shows what the lab's components logged while it ran."""
    report = (yield).get_result()
    lab = getattr(item, "funcargs", {}).get("netlab_lab")
    if lab is None:
        return
    if call.when == "setup":
        item.stash[_LOG_MARKS] = lab.log_marks()
    elif call.when == "call" and report.failed:
        report.sections.append(("netlab component logs", lab.logs_since(item.stash.get(_LOG_MARKS, {}))))
