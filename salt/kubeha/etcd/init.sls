# -*- coding: utf-8 -*-
# vim: ft=sls
# etcd itself is a static pod that kubeadm manages (docs/facts.md #7); kubeha only adds the client
# the etcdctl module and operators use against it, with kubeadm's certificates.
include:
  - .client
