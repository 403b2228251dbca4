# -*- coding: utf-8 -*-
# vim: ft=sls
# Reload, never restart, on config changes: a reload hands the listening sockets to the
# new process (expose-fd listeners) so established API streams are not cut.
{%- set tplroot = tpldir.split('/')[0] %}

include:
  - {{ tplroot }}.lb.haproxy.config

kubeha-lb-haproxy-service-running:
  service.running:
    - name: haproxy
    - enable: True
    - reload: True
    - watch:
      - file: kubeha-lb-haproxy-config-file-managed
      - file: kubeha-lb-haproxy-cut-file-managed
