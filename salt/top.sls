# -*- coding: utf-8 -*-
# vim: ft=sls
# Every minion that belongs to a kubeha cluster (grain kubeha_cluster) converges with the
# kubeha formula; its role (control plane or worker) comes from the cluster's pillar.
base:
  'kubeha_cluster:*':
    - match: grain
    - kubeha
