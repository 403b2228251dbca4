# -*- coding: utf-8 -*-
# vim: ft=sls
# curl runs keepalived's check of HAProxy's local /healthz.

kubeha-lb-keepalived-package-installed:
  pkg.installed:
    - pkgs:
      - keepalived
      - curl
