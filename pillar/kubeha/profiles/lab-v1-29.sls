# A lab profile: the lab cluster built at Kubernetes 1.29, so that an upgrade to the lab's
# upgrade:target_version (1.31.0) goes through 1.30 (kubeadm never skips a minor).
# Picked by the grain kubeha_profile containing v1-29 (pillar/top.sls); used by
# tests/lab/test_upgrade.py.
kubeha:
  kubernetes:
    version: 1.29.15
