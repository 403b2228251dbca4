# -*- coding: utf-8 -*-
# vim: ft=sls
# Undo kubeha's configuration on a node that has left the cluster (kubeadm reset first).
include:
  - .lb.clean
  - .kubeadm.clean
  - .etcd.clean
  - .packages.clean
  - .containerd.clean
  - .node.clean
