# -*- coding: utf-8 -*-
# vim: ft=sls
# Reload (SIGHUP) on config changes, never restart: a restart drops the VIP for a
# master-down interval; a reload keeps the instance state.
{%- set tplroot = tpldir.split('/')[0] %}

include:
  - {{ tplroot }}.lb.keepalived.config

kubeha-lb-keepalived-service-running:
  service.running:
    - name: keepalived
    - enable: True
    - reload: True
    - watch:
      - file: kubeha-lb-keepalived-file-managed
      - file: kubeha-lb-keepalived-notify-file-managed
