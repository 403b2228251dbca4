# -*- coding: utf-8 -*-
# vim: ft=sls
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as kubeha with context %}

kubeha-etcd-client-package-installed:
  pkg.installed:
    - name: {{ kubeha.etcd.client_package }}
