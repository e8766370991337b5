"""netlab-netpol: the network-policy agent, one on every node. It watches NetworkPolicies, Pods
and Namespaces and programs the node's nftables so that traffic to and from the node's pods obeys
every policy that selects them (see docs/network-policy.md)."""
