#!/usr/bin/env bash
# 08 · Cross-node pod traffic, host-gw vs vxlan.
#   sudo docs/tutorials/08-host-gw-vs-vxlan.sh        (NETLAB_LANG=ko: in Korean)
source "$(dirname "$0")/lib.sh"
title "Cross-node pod traffic, host-gw vs vxlan"
about "host-gw routes each node's pod subnet to that node's address; vxlan (as flannel does) wraps pod packets in UDP port 8472 between nodes. This tutorial makes its own two small labs, and removes them."
prefix=${TUTORIAL_LAB_PREFIX:-t08}
net=${TUTORIAL_NET:-172.30.8}
pods=${TUTORIAL_PODS:-10.208}

i=0
for backend in host-gw vxlan; do
  lab="$prefix-$backend"
  cleanup+=("netlab down --name $lab")
  half=$((i * 128))
  cat > "/tmp/$lab.yaml" <<YAML
kind: Cluster
name: $lab
nodes: [{role: control-plane}, {role: worker}]
networking: {backend: $backend, nodeSubnet: $net.$half/25, podSubnet: $pods.$half.0/17}
YAML
  step 'a lab with backend $backend: the routes of worker'
  netlab up -f "/tmp/$lab.yaml" >/dev/null
  run netlab exec --name "$lab" worker -- ip route
  i=$((i + 1))
done

step "vxlan: the flannel.1 device, and the forwarding entry for the other node"
run netlab exec --name "$prefix-vxlan" worker -- ip -d link show flannel.1
run netlab exec --name "$prefix-vxlan" worker -- bridge fdb show dev flannel.1

step "on the wire between the nodes: a ping from node to node over the pod subnet is UDP 8472"
cp_pod_gw=$(netlab exec --name "$prefix-vxlan" control-plane -- ip -4 -br addr show cni0 | awk '{print $3}' | cut -d/ -f1)
(timeout 5 netlab capture --name "$prefix-vxlan" -c 1 worker udp port 8472 > /tmp/t08.cap 2>/dev/null &)
sleep 1
netlab exec --name "$prefix-vxlan" worker -- ping -c 2 -W 1 "$cp_pod_gw" >/dev/null
sleep 1
cat /tmp/t08.cap
grep -q "UDP\|OTV\|VXLAN\|8472" /tmp/t08.cap
