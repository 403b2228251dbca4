# -*- coding: utf-8 -*-
# vim: ft=sls
kubeha-lb-haproxy-clean-divert-dead:
  service.dead:
    - name: kubeha-vip-divert
    - enable: False
    - onlyif: test -e /etc/systemd/system/kubeha-vip-divert.service

kubeha-lb-haproxy-clean-divert-absent:
  file.absent:
    - name: /etc/systemd/system/kubeha-vip-divert.service
    - require:
      - service: kubeha-lb-haproxy-clean-divert-dead

kubeha-lb-haproxy-clean-service-dead:
  service.dead:
    - name: haproxy
    - enable: False

kubeha-lb-haproxy-clean-package-removed:
  pkg.removed:
    - name: haproxy
    - require:
      - service: kubeha-lb-haproxy-clean-service-dead
