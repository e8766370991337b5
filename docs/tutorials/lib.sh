# Shared by the tutorials: the lab they use, a heading printer, and clean-up on exit.
# A tutorial runs on a lab that is up (`sudo netlab up`); NETLAB_NAME picks another lab.
set -euo pipefail
export NETLAB_NAME=${NETLAB_NAME:-netlab}
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }
cleanup=()
on_exit() { for c in "${cleanup[@]}"; do eval "$c" >/dev/null 2>&1 || true; done; }
trap on_exit EXIT
