# -*- coding: utf-8 -*-
# vim: ft=sls

kubeha-lb-keepalived-package-installed:
  pkg.installed:
    - name: keepalived
