#!/bin/bash
# Runs inside the test VM, started by its init (scripts/vm/init) once the shares are mounted:
# /mnt/src is the host's checkout (read-only), /results the run's writable directory, where the
# host's runner left job.sh (the command) and timeout (seconds). The job's output goes to
# /results/output.log and to the serial console (which the host streams), its exit code to /results/rc.
set -u
hostname netlab-vm
ip link set lo up
sysctl -qw kernel.panic_on_oops=1
# A copy of the checkout that Python may write its caches into; the editable install in the
# image's virtualenv (/opt/netlab/venv) points at /src.
mkdir -p /src
tar -C /mnt/src --exclude=./.venv --exclude=./.git --exclude=./.cache --exclude=__pycache__ \
    --exclude=.pytest_cache --exclude=.ruff_cache -cf - . | tar -C /src -xf -
export PATH=/opt/netlab/venv/bin:$PATH HOME=/root LANG=C.UTF-8 NETLAB_VM=1 PYTHONUNBUFFERED=1
[ -f /results/env ] && . /results/env  # from the runner: NETLAB_VM_ACCEL, NETLAB_SLOWDOWN, ...
cd /src
# compiled once here rather than by each of the lab's processes as it starts
python -m compileall -q -j 0 netlab cni coredns proxy tests >/dev/null 2>&1
echo "netlab-vm: job starting ($(cut -d" " -f1 /proc/uptime)s since the kernel started, $(uname -r), $(nproc) CPUs, $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) MiB)" >/dev/console
limit=$(cat /results/timeout 2>/dev/null || echo 3600)
set -o pipefail
timeout -k 10 "$limit" /bin/bash /results/job.sh </dev/null 2>&1 | tee /results/output.log >/dev/console
rc=$?
[ "$rc" = 124 ] && echo "netlab-vm: the job ran out of its ${limit}s" | tee -a /results/output.log >/dev/console
# the state (logs) of any lab the job left or the test suite kept, for a failure's post-mortem
for d in /tmp/nlt-state-* /var/lib/netlab; do
  [ -d "$d" ] && mkdir -p /results/state && cp -r "$d" /results/state/ 2>/dev/null
done
echo "$rc" >/results/rc
echo "netlab-vm: job exited $rc" >/dev/console
