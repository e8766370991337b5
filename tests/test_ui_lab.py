"""`netlab ui` in a real browser (headless Chromium from Debian's packages, driven by Selenium):
the page shows the lab's nodes and a Deployment's pods behind its Service, follows the API's
watch when a pod is deleted, shows the Service's rules when clicked, and draws a trace."""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.lab

APP = """apiVersion: apps/v1
kind: Deployment
metadata: {name: nlt-ui}
spec:
  replicas: 3
  selector: {matchLabels: {app: nlt-ui}}
  template:
    metadata: {labels: {app: nlt-ui}}
    spec:
      containers:
      - name: agnhost
        image: registry.k8s.io/e2e-test-images/agnhost:2.39
        args: ["netexec", "--http-port=8080"]
        readinessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 2}
---
apiVersion: v1
kind: Service
metadata: {name: nlt-ui}
spec:
  selector: {app: nlt-ui}
  ports: [{port: 80, targetPort: 8080}]
"""


@pytest.fixture
def browser(tmp_path):
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.skip("needs Debian's chromium and chromium-driver (vagrant/provision.sh installs them)")
    webdriver = pytest.importorskip("selenium.webdriver")
    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium")
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              f"--user-data-dir={tmp_path / 'chromium'}"):
        opts.add_argument(a)
    driver = webdriver.Chrome(options=opts, service=webdriver.ChromeService(shutil.which("chromedriver")))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def ui(netlab_lab):
    p = subprocess.Popen([sys.executable, "-m", "netlab.tools.cli", "ui", "--port", "0", "--name", netlab_lab.name],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        assert "http://127.0.0.1:" in line, p.stderr.read() if p.poll() is not None else line
        yield line.split()[-4]  # ... : http://127.0.0.1:PORT/ (Ctrl-C stops it)
    finally:
        p.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(10)
        if p.poll() is None:
            p.kill()


def test_page_follows_the_lab(netlab_lab, ui, browser):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    lab = netlab_lab
    lab.apply(APP)
    try:
        pods = lab.wait_ready("app=nlt-ui", count=3)
        names = {f"default/{p['metadata']['name']}" for p in pods}
        browser.get(ui)

        def wait(fn, timeout: float = 30):  # the page redraws: an element found may be gone a moment later
            return WebDriverWait(browser, timeout, 0.2, ignored_exceptions=(StaleElementReferenceException,)).until(fn)

        def shown(attr: str, within: str = "") -> set[str]:
            return {e.get_attribute(attr) for e in browser.find_elements(By.CSS_SELECTOR, f"{within}[{attr}]")}

        # every node, and the three pods with their IPs, in their node's card
        wait(lambda _: {n.name for n in lab.cluster.nodes} <= shown("data-node"))
        wait(lambda _: names <= shown("data-pod"))
        for p in pods:
            where = f"[data-node='{p['spec']['nodeName']}'] [data-pod='default/{p['metadata']['name']}']"
            wait(lambda _, where=where, ip=p["status"]["podIP"]: ip in browser.find_element(By.CSS_SELECTOR, where).text)
        # the Service with its three endpoints
        wait(lambda _: {p["status"]["podIP"] for p in pods} == shown("data-endpoint", "[data-service='default/nlt-ui'] "))
        # the counters: rates appear on the links within a couple of seconds
        wait(lambda _: any("p/s" in e.text for e in browser.find_elements(By.CSS_SELECTOR, ".rate")))

        # a pod deleted: it leaves the page, its replacement comes, without a reload
        gone = sorted(names)[0]
        lab.kubectl("delete", "pod", gone.split("/")[1], "--wait=false")
        wait(lambda _: gone not in shown("data-pod"))
        new = lab.wait_ready("app=nlt-ui", count=3)
        new_names = {f"default/{p['metadata']['name']}" for p in new}
        assert gone not in new_names
        wait(lambda _: new_names <= shown("data-pod"))

        # clicking the Service: its rules on every node, in the lab's proxy mode (asked again
        # until kube-proxy has programmed the replacement, a moment after its endpoint is ready)
        ips = {p["status"]["podIP"] for p in new}
        wait(lambda _: ips == shown("data-endpoint", "[data-service='default/nlt-ui'] "))

        def rules() -> str | None:
            browser.find_element(By.CSS_SELECTOR, "[data-service='default/nlt-ui']").click()
            blocks = WebDriverWait(browser, 30, 0.2).until(lambda _: [
                e.text for e in browser.find_elements(By.CSS_SELECTOR, "[data-rules]")] or None)
            return browser.find_element(By.ID, "detail").text if len(blocks) == len(lab.cluster.nodes) and all(
                ip in b for b in blocks for ip in ips) else None
        text = WebDriverWait(browser, 30, 1, ignored_exceptions=(StaleElementReferenceException,)).until(
            lambda _: rules())
        assert f"({lab.cluster.proxy_mode})" in text and "default/nlt-ui" in text
        assert all(n.name in text for n in lab.cluster.nodes)

        # a trace from the page: from a pod to the Service, its path drawn on the nodes
        src = sorted(new_names)[0].split("/")[1]
        browser.find_element(By.ID, "trace-src").send_keys(src)
        browser.find_element(By.ID, "trace-dst").send_keys("nlt-ui")
        browser.find_element(By.CSS_SELECTOR, "#trace-form button").click()
        trace = wait(lambda _: browser.find_element(By.ID, "trace-text"), 60)
        assert "nlt-ui" in trace.text
        # the pod that received it (one of the Service's) is lit, and the drawn path ends there
        receiver = re.search(r"received by: (pod (\S+) on \S+)", trace.text)
        assert receiver and receiver.group(2) in new_names, trace.text
        assert f"default/{src}" in shown("data-pod", ".pod.traced") and receiver.group(2) in shown("data-pod", ".pod.traced")
        assert shown("data-node", ".node.traced")
        assert browser.find_element(By.ID, "path").text.endswith(receiver.group(1))
        # a source that is not there: trace's own error, on the page
        browser.find_element(By.ID, "trace-src").clear()
        browser.find_element(By.ID, "trace-src").send_keys("nlt-nope")
        browser.find_element(By.CSS_SELECTOR, "#trace-form button").click()
        err = wait(lambda _: browser.find_element(By.CSS_SELECTOR, "#detail .error"))
        assert "'nlt-nope' is not a node, pod, Service" in err.text
    finally:
        lab.kubectl("delete", "-f", "-", "--wait=false", input=APP, check=False)
