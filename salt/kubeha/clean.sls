# -*- coding: utf-8 -*-
# vim: ft=sls
# Undo kubeha's configuration on a node that has left the cluster (kubeadm reset first).
include:
  - .day2.clean
  - .lb.clean
  - .kubeadm.clean
  - .etcd.clean
  - .packages.clean
  - .containerd.clean
  - .node.clean
