#!/usr/bin/env bash
# The one list of system packages netlab needs, and the project's virtualenv.
# Used by `scripts/setup`, `scripts/test` and the Vagrantfile. Idempotent; quick the second time.
# Usage: provision.sh [--test-tools] [REPO_DIR]   (default: the repository this script lives in)
#   --test-tools: also what only the test suite needs (vagrant, to validate the Vagrantfile)
set -euo pipefail
test_tools=0
if [ "${1:-}" = --test-tools ]; then test_tools=1; shift; fi
repo=$(cd "${1:-$(dirname "$0")/..}" && pwd)

# nginx: what the ingress-nginx controller drives, inside its pod (docs/ingress.md)
# redis-server, mariadb-server, apache2, php-cli + php-redis, netcat-openbsd, stress: the servers and tools
# the image catalog runs inside pods for redis, mysql/mariadb, httpd, the guestbook, the toolboxes and
# polinux/stress (docs/images.md)
# chromium, chromium-driver: the browser test of `netlab ui` (headless)
packages=(
  iproute2 iptables nftables conntrack ipset ipvsadm iputils-ping curl dnsutils tcpdump
  containernetworking-plugins etcd-server dnsmasq-base dnsperf graphviz python3-venv nginx gettext
  redis-server mariadb-server apache2 php-cli php-redis netcat-openbsd wget stress
  chromium chromium-driver
)
if [ "$test_tools" = 1 ]; then packages+=(vagrant); fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian starts these as services on the host (ports 80, 6379, 3306): netlab runs them only inside pods
if command -v systemctl >/dev/null; then
  for service in nginx apache2 apache-htcacheclean redis-server mariadb; do
    if systemctl is-enabled "$service" >/dev/null 2>&1 || systemctl is-active "$service" >/dev/null 2>&1; then
      systemctl disable --now "$service" >/dev/null 2>&1 || true
    fi
  done
fi

# The virtualenv at the repo root, with the project editable and its test extras.
# Reinstalled only when pyproject.toml changed since the last install.
venv="$repo/.venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
stamp="$venv/.netlab-installed"
if [ ! -f "$stamp" ] || [ "$repo/pyproject.toml" -nt "$stamp" ]; then
  "$venv/bin/pip" install -q --upgrade pip
  "$venv/bin/pip" install -q -e "$repo[test]"
  touch "$stamp"
fi
