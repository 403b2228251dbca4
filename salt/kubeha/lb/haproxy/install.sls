# -*- coding: utf-8 -*-
# vim: ft=sls

kubeha-lb-haproxy-package-installed:
  pkg.installed:
    - name: haproxy
