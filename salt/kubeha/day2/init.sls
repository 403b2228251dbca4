# -*- coding: utf-8 -*-
# vim: ft=sls
# Day 2 on a control plane: the beacons that start certificate renewal and etcd defrag
# through the master's reactors (salt/reactor/reactors.yaml). Backups, the restore drill and
# the scheduled defrag run from the master's scheduler (docs/examples/master.d/kubeha.conf).
include:
  - .beacons
