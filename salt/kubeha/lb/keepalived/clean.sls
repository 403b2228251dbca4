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
