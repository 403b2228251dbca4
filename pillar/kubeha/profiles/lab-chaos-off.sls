# A lab profile: the lab cluster with chaos runs not allowed, as every cluster is by default.
# tests/lab/test_chaos.py sets the grain kubeha_profile=chaos-off on the first control plane
# (whose pillar the master compiles for the cluster's model) to prove that a run is refused
# and changes nothing.
kubeha:
  chaos:
    enabled: false
