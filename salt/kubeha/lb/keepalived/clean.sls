# -*- coding: utf-8 -*-
# vim: ft=sls
# Stopping keepalived releases the VIP (priority-0 advert): a peer takes over after its skew.
kubeha-lb-keepalived-clean-service-dead:
  service.dead:
    - name: keepalived
    - enable: False

kubeha-lb-keepalived-clean-files-absent:
  file.absent:
    - names:
      - /etc/keepalived/keepalived.conf
      - /etc/keepalived/kubeha-notify.sh
    - require:
      - service: kubeha-lb-keepalived-clean-service-dead

kubeha-lb-keepalived-clean-package-removed:
  pkg.removed:
    - name: keepalived
    - require:
      - service: kubeha-lb-keepalived-clean-service-dead

# The self-healing VIP's beacon and the tracked files' directory (kubeha.lb.keepalived.heal).
kubeha-lb-keepalived-clean-heal-beacon-absent:
  beacon.absent:
    - name: kubeha_vip
    - save: True

kubeha-lb-keepalived-clean-heal-files-absent:
  file.absent:
    - names:
      - /etc/tmpfiles.d/kubeha-keepalived.conf
      - /run/kubeha/vip-beacon.json
      - /run/kubeha/keepalived
    - require:
      - service: kubeha-lb-keepalived-clean-service-dead
