# -*- coding: utf-8 -*-
# vim: ft=sls
# containerd reads its config only at start: restart (not reload) when it changes.
{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as kubeha with context %}
{%- from tplroot ~ "/config_files.jinja" import config_files with context %}

include:
  - {{ tplroot }}.containerd.config

kubeha-containerd-service-running:
  service.running:
    - name: containerd
    - enable: True
    - watch:
      - file: kubeha-containerd-config-file-managed
