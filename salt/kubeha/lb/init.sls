# -*- coding: utf-8 -*-
# vim: ft=sls
# The access layer in front of kube-apiserver, per kubeha:vip:provider.
{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as kubeha with context %}

include:
{%- if kubeha.vip.provider == 'keepalived-haproxy' %}
  - .haproxy
  - .keepalived
{%- else %}
  - .kube_vip
{%- endif %}
