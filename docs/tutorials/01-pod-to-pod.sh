#!/usr/bin/env bash
# 01 · Pod to pod.
#   sudo docs/tutorials/01-pod-to-pod.sh        (NETLAB_LANG=ko: in Korean)
source "$(dirname "$0")/lib.sh"
title "Pod to pod"
about "Every pod has its own IP from its node's pod subnet, and reaches every other pod by that IP, on the same node or across nodes, with no NAT."
cleanup+=("netlab delete pod t01-a" "netlab delete pod t01-b")

step "two pods, pinned to different nodes"
netlab apply -f - <<'YAML'
apiVersion: v1
kind: Pod
metadata: {name: t01-a, labels: {tutorial: t01}}
spec:
  nodeName: worker
  containers: [{name: web, image: registry.k8s.io/e2e-test-images/agnhost:2.39, args: [netexec]}]
---
apiVersion: v1
kind: Pod
metadata: {name: t01-b, labels: {tutorial: t01}}
spec:
  nodeName: worker2
  containers: [{name: web, image: registry.k8s.io/e2e-test-images/agnhost:2.39, args: [netexec]}]
YAML
netlab wait -l tutorial=t01 --count 2
run netlab get pods -l tutorial=t01 -o wide 2>/dev/null || run netlab get pods -o wide
b_ip=$(netlab get pod t01-b -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"]["podIP"])')

step 't01-a asks t01-b for its name, by IP ($b_ip): the answer names t01-b'
answer=$(netlab exec t01-a -- wget -qO- "http://$b_ip:8080/hostname")
echo "$answer"
[ "$answer" = t01-b ]

step "t01-b sees t01-a's own address as the client: no NAT between pods"
netlab exec t01-a -- wget -qO- "http://$b_ip:8080/clientip"; echo

step "how: worker routes t01-b's subnet to worker2 (host-gw), which bridges it to the pod"
run netlab exec worker -- ip route
run netlab exec worker2 -- bridge link
