#!/usr/bin/env bash
# 07 · iptables mode vs nftables mode.
#   sudo docs/tutorials/07-nftables-mode.sh        (NETLAB_LANG=ko: in Korean)
source "$(dirname "$0")/lib.sh"
title "iptables mode vs nftables mode"
about "The same Service, two kube-proxy modes. iptables walks a list (KUBE-SERVICES grows with every Service); nftables looks the destination up in a map. This tutorial makes its own two small labs, and removes them."
prefix=${TUTORIAL_LAB_PREFIX:-t07}
net=${TUTORIAL_NET:-172.30.7}       # node subnets $net.0/25 and $net.128/25
pods=${TUTORIAL_PODS:-10.207}       # pod subnets $pods.0.0/17 and $pods.128.0/17

svc='apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: registry.k8s.io/e2e-test-images/agnhost:2.39, args: [netexec]}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]'

i=0
for mode in iptables nftables; do
  lab="$prefix-$mode"
  cleanup+=("netlab down --name $lab")
  half=$((i * 128))
  cat > "/tmp/$lab.yaml" <<YAML
kind: Cluster
name: $lab
nodes: [{role: control-plane}, {role: worker}]
networking: {proxyMode: $mode, nodeSubnet: $net.$half/25, podSubnet: $pods.$half.0/17}
YAML
  step 'a lab in $mode mode'
  netlab up -f "/tmp/$lab.yaml"
  echo "$svc" | netlab apply --name "$lab" -f -
  netlab wait --name "$lab" -l app=web --count 2
  sleep 1.5
  i=$((i + 1))
done

step "iptables mode: the Service in KUBE-SERVICES, a chain per Service, a chain per endpoint"
netlab rules --name "$prefix-iptables" --node worker | grep "default/web"

step "nftables mode: the Service is an element of the service-ips map; chains per Service and endpoint"
netlab exec --name "$prefix-nftables" worker -- nft list map ip kube-proxy service-ips | tee /tmp/t07.map
grep -q "goto service-" /tmp/t07.map
netlab rules --raw --name "$prefix-nftables" --node worker | grep -A3 "chain service-.*default/web"
