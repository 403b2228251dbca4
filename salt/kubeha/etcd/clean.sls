# -*- coding: utf-8 -*-
# vim: ft=sls
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as kubeha with context %}

kubeha-etcd-clean-client-package-removed:
  pkg.removed:
    - name: {{ kubeha.etcd.client_package }}
