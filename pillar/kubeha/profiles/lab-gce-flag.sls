# A lab profile: an apiserver flag that Kubernetes 1.30 accepts and 1.31 refuses
# (--cloud-provider-gce-lb-src-cidrs went with the in-tree cloud providers, KEP-2395), as a
# site that once ran on GCE might still carry. An upgrade to 1.31 then fails on its first
# control plane (the new kube-apiserver exits: unknown flag) and must roll that node back.
# Picked by the grain kubeha_profile containing gce-flag; used by tests/lab/test_upgrade.py.
kubeha:
  apiserver:
    extra_args:
      cloud-provider-gce-lb-src-cidrs: 130.211.0.0/22,35.191.0.0/16
  upgrade:
    # Fail fast in the lab: kubeadm waits this long for the new static pods (5m upstream).
    kubeadm_timeout: 60s
