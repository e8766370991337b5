#!/usr/bin/env bash
# 12 · The eight steps of pod creation, watched live.
#   sudo docs/tutorials/12-pod-creation.sh        (NETLAB_LANG=ko: in Korean)
source "$(dirname "$0")/lib.sh"
title "The eight steps of pod creation, watched live"
about "The Deployment controller stores a ReplicaSet; the ReplicaSet controller creates a Pod, the scheduler binds it, the kubelet makes its sandbox, CNI gives it an address, its container starts, the kubelet writes Ready, the EndpointSlice controller lists it, and kube-proxy programs it on every node."
cleanup+=("netlab delete deployment t12" "netlab delete service t12" "rm -f '${TMPDIR:-/tmp}/t12.follow'")
follow=${TMPDIR:-/tmp}/t12.follow

step "watch the API (ReplicaSets, Pods, EndpointSlices, Events) and the components' logs, then create a Deployment and its Service"
netlab events --follow --timeout 30 >"$follow" &
watcher=$!
cleanup+=("kill $watcher")
sleep 1
run netlab apply -f - <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata: {name: t12}
spec:
  replicas: 1
  selector: {matchLabels: {app: t12}}
  template:
    metadata: {labels: {app: t12}}
    spec:
      containers: [{name: web, image: registry.k8s.io/e2e-test-images/agnhost:2.39, args: [netexec]}]
---
apiVersion: v1
kind: Service
metadata: {name: t12}
spec:
  selector: {app: t12}
  ports: [{port: 80, targetPort: 8080}]
YAML
netlab wait -l app=t12 --count 1
pod=$(netlab get pods -l app=t12 -o json | python3 -c 'import json, sys; print(json.load(sys.stdin)["items"][0]["metadata"]["name"])')
sleep 2  # kube-proxy's sync on every node, a moment after the slice

step 'what came, in order, about $pod: each watch event and each component log line that says a step'
kill "$watcher" 2>/dev/null || true
wait "$watcher" 2>/dev/null || true
run grep -E "t12|SyncProxyRules" "$follow"
grep -q "Pod/$pod ADDED owner=ReplicaSet/" "$follow"
grep -q "CNI ADD pod=\"default/$pod\"" "$follow"
grep -q "SyncProxyRules complete .*default/t12" "$follow"

step 'the same steps after the fact, with their times: netlab explain pod $pod'
run netlab explain pod "$pod" | tee "$follow"
say "the API keeps times to the second; the components' log lines to the millisecond. Every step has a time, and the rules are on every node:"
[ "$(awk '$1 ~ /^[1-8]$/ && $3 != "-"' "$follow" | wc -l)" = 8 ]
grep -E "^8 .* on ([0-9]+)/\1 nodes" "$follow"
