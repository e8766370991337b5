#!/usr/bin/env bash
# 04 · NodePort.
#   sudo docs/tutorials/04-nodeport.sh        (NETLAB_LANG=ko: in Korean)
source "$(dirname "$0")/lib.sh"
title "NodePort"
about "The Service answers on a port of every node's address, from outside the pods."
cleanup+=("netlab delete deployment t04" "netlab delete service t04")

netlab apply -f - <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata: {name: t04}
spec:
  replicas: 2
  selector: {matchLabels: {app: t04}}
  template:
    metadata: {labels: {app: t04}}
    spec:
      containers: [{name: web, image: registry.k8s.io/e2e-test-images/agnhost:2.39, args: [netexec]}]
---
apiVersion: v1
kind: Service
metadata: {name: t04}
spec:
  type: NodePort
  selector: {app: t04}
  ports: [{port: 80, targetPort: 8080}]
YAML
netlab wait -l app=t04 --count 2
sleep 1.5
run netlab get service t04
port=$(netlab get service t04 -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["spec"]["ports"][0]["nodePort"])')
worker_ip=$(netlab status | awk '$1 == "worker" {print $3}')

step 'from node control-plane to the address of worker, $worker_ip:$port'
netlab exec control-plane -- curl -s "http://$worker_ip:$port/hostname"; echo

step "the rules: KUBE-NODEPORTS -> KUBE-EXT (masquerade: the client is outside the pods) -> KUBE-SVC"
netlab exec worker -- iptables-save -t nat | grep -E -- "--dport $port |KUBE-EXT.*t04" | tee /tmp/t04.rules
grep -q "KUBE-NODEPORTS" /tmp/t04.rules
