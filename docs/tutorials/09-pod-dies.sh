#!/usr/bin/env bash
# 09 · When a pod dies.
#   sudo docs/tutorials/09-pod-dies.sh        (NETLAB_LANG=ko: in Korean)
source "$(dirname "$0")/lib.sh"
title "When a pod dies"
about "Its endpoint leaves the EndpointSlice, kube-proxy drops its rule, the Deployment makes a new pod, and clients keep being answered."
cleanup+=("netlab delete deployment t09" "netlab delete service t09" "netlab delete pod t09-client")

netlab apply -f - <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata: {name: t09}
spec:
  replicas: 2
  selector: {matchLabels: {app: t09}}
  template:
    metadata: {labels: {app: t09}}
    spec:
      containers: [{name: web, image: registry.k8s.io/e2e-test-images/agnhost:2.39, args: [netexec]}]
---
apiVersion: v1
kind: Service
metadata: {name: t09}
spec:
  selector: {app: t09}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: t09-client, labels: {app: t09-client}}
spec:
  containers: [{name: c, image: busybox, command: [sleep, infinity]}]
YAML
netlab wait -l app=t09 --count 2
netlab wait -l app=t09-client
run netlab get pods -o wide
victim=$(netlab get pods -o json | python3 -c '
import json, sys
print(next(p["metadata"]["name"] for p in json.load(sys.stdin)["items"] if p["metadata"]["name"].startswith("t09-")
           and not p["metadata"]["name"].startswith("t09-client")))')

step 'delete $victim'
run netlab delete pod "$victim"
netlab wait -l app=t09 --count 2
sleep 1.5
run netlab get pods -o wide
run netlab get endpointslices

step "the clients are still answered, by the pods that are there now"
netlab exec t09-client -- sh -c 'for i in $(seq 10); do wget -qO- -T 2 http://t09/hostname; echo; done' \
  | sort | uniq -c | tee /tmp/t09.counts
! grep -q "$victim" /tmp/t09.counts
