# -*- coding: utf-8 -*-
# vim: ft=sls
# Remove the day-2 beacons (a node leaving the cluster).
kubeha-day2-clean-certs-beacon-absent:
  beacon.absent:
    - name: kubeha_certs
    - save: True

kubeha-day2-clean-etcd-frag-beacon-absent:
  beacon.absent:
    - name: kubeha_etcd_frag
    - save: True
