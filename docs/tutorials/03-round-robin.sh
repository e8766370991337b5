#!/usr/bin/env bash
# 03 · Load balancing.
#   sudo docs/tutorials/03-round-robin.sh        (NETLAB_LANG=ko: in Korean)
source "$(dirname "$0")/lib.sh"
title "Load balancing"
about "New connections to a ClusterIP spread evenly over the ready pods."
cleanup+=("netlab delete deployment t03" "netlab delete service t03" "netlab delete pod t03-client")

netlab apply -f - <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata: {name: t03}
spec:
  replicas: 3
  selector: {matchLabels: {app: t03}}
  template:
    metadata: {labels: {app: t03}}
    spec:
      containers: [{name: web, image: registry.k8s.io/e2e-test-images/agnhost:2.39, args: [netexec]}]
---
apiVersion: v1
kind: Service
metadata: {name: t03}
spec:
  selector: {app: t03}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: t03-client, labels: {app: t03-client}}
spec:
  containers: [{name: c, image: busybox, command: [sleep, infinity]}]
YAML
netlab wait -l app=t03 --count 3
netlab wait -l app=t03-client
sleep 1.5

step "90 requests from a client pod, one connection each: who answered?"
netlab exec t03-client -- sh -c 'for i in $(seq 90); do wget -qO- http://t03/hostname; echo; done' \
  | sort | uniq -c | tee /tmp/t03.counts
[ "$(wc -l < /tmp/t03.counts)" = 3 ]
