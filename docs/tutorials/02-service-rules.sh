#!/usr/bin/env bash
# 02 · A Service and its iptables rules.
#   sudo docs/tutorials/02-service-rules.sh        (NETLAB_LANG=ko: in Korean)
source "$(dirname "$0")/lib.sh"
title "A Service and its iptables rules"
about "A ClusterIP is not on any interface: the NAT rules of kube-proxy on every node catch packets to it and DNAT them to one of the Service's pods."
cleanup+=("netlab delete deployment t02" "netlab delete service t02")

step "a Deployment of 3 agnhost pods and a Service in front of them"
netlab apply -f - <<'YAML'
apiVersion: apps/v1
kind: Deployment
metadata: {name: t02}
spec:
  replicas: 3
  selector: {matchLabels: {app: t02}}
  template:
    metadata: {labels: {app: t02}}
    spec:
      containers: [{name: web, image: registry.k8s.io/e2e-test-images/agnhost:2.39, args: [netexec]}]
---
apiVersion: v1
kind: Service
metadata: {name: t02}
spec:
  selector: {app: t02}
  ports: [{name: http, port: 80, targetPort: 8080}]
YAML
netlab wait -l app=t02 --count 3
run netlab get service t02
run netlab get endpointslices
ip=$(netlab get service t02 -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["spec"]["clusterIP"])')
sleep 1.5  # kube-proxy's minimum sync period

step 'the ClusterIP $ip is on no interface of the node'
netlab exec worker -- ip -br addr | grep -c "$ip" || true

step "KUBE-SERVICES matches it and jumps to the Service's chain"
netlab exec worker -- iptables-save -t nat | grep -- "-d $ip/32" | tee /tmp/t02.rules
grep -q "KUBE-SVC-" /tmp/t02.rules

step "the Service's chain picks an endpoint: 1/3, then 1/2 of the rest, then the last"
svc=$(grep -o 'KUBE-SVC-[A-Z0-9]*' /tmp/t02.rules | head -1)
netlab exec worker -- iptables-save -t nat | grep -- "-A $svc " | tee /tmp/t02.svc
grep -q "probability 0.33333333349" /tmp/t02.svc

step "each endpoint's chain DNATs to the pod"
netlab exec worker -- iptables-save -t nat | grep -- "DNAT" | grep "default/t02:http"
