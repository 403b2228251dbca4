# -*- coding: utf-8 -*-
# vim: ft=sls
kubeha-lb-haproxy-clean-service-dead:
  service.dead:
    - name: haproxy
    - enable: False

kubeha-lb-haproxy-clean-package-removed:
  pkg.removed:
    - name: haproxy
    - require:
      - service: kubeha-lb-haproxy-clean-service-dead
