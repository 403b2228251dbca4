# -*- coding: utf-8 -*-
# vim: ft=sls
# Remove kubeha's boot-time settings. Swap stays off and modules stay loaded until the
# next reboot: turning them back on under a running kubelet would break it.
kubeha-node-clean-modules-load-file-absent:
  file.absent:
    - name: /etc/modules-load.d/kubeha.conf

kubeha-node-clean-sysctl-file-absent:
  file.absent:
    - name: /etc/sysctl.d/99-kubeha.conf
