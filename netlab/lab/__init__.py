"""The lab builder: namespaces and links of the plan (build), the supervisor and the components it
runs, the PKI and kubeconfigs, the add-ons, and init/join for a cluster over machines."""
