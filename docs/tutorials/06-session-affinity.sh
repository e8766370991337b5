#!/usr/bin/env bash
# 06 · Session affinity.
#   sudo docs/tutorials/06-session-affinity.sh        (NETLAB_LANG=ko: in Korean)
source "$(dirname "$0")/lib.sh"
title "Session affinity"
about "With sessionAffinity ClientIP, every connection from one client goes to the same pod (iptables: the recent match remembers the client for timeoutSeconds)."
cleanup+=("netlab delete deployment t06" "netlab delete service t06" "netlab delete pod t06-client")

netlab apply -f - <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata: {name: t06}
spec:
  replicas: 3
  selector: {matchLabels: {app: t06}}
  template:
    metadata: {labels: {app: t06}}
    spec:
      containers: [{name: web, image: registry.k8s.io/e2e-test-images/agnhost:2.39, args: [netexec]}]
---
apiVersion: v1
kind: Service
metadata: {name: t06}
spec:
  selector: {app: t06}
  sessionAffinity: ClientIP
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: t06-client, labels: {app: t06-client}}
spec:
  containers: [{name: c, image: busybox, command: [sleep, infinity]}]
YAML
netlab wait -l app=t06 --count 3
netlab wait -l app=t06-client
sleep 1.5

step "20 connections from one client: one pod answers them all"
netlab exec t06-client -- sh -c 'for i in $(seq 20); do wget -qO- http://t06/hostname; echo; done' \
  | sort | uniq -c | tee /tmp/t06.counts
[ "$(wc -l < /tmp/t06.counts)" = 1 ]

step "the rules: -m recent --rcheck in the Service's chain, --set in each endpoint's"
netlab exec worker -- iptables-save -t nat | grep "recent" | grep "default/t06"
