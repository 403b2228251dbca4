# -*- coding: utf-8 -*-
# vim: ft=sls
# Forwarding and bridge-netfilter for pod networking; non-local bind when HAProxy binds the
# VIP itself (kubeha:vip:lb_bind: vip) on nodes that do not hold it.
{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as kubeha with context %}
{%- set sysctls = kubeha.node.sysctls.copy() %}
{%- if kubeha.derived.is_control_plane and kubeha.vip.provider == 'keepalived-haproxy' and kubeha.vip.lb_bind == 'vip' %}
{%-   do sysctls.update({'net.ipv4.ip_nonlocal_bind': 1}) %}
{%- endif %}

include:
  - {{ tplroot }}.node.modules
{%- for name, value in sysctls | dictsort %}

kubeha-node-sysctl-{{ name }}-present:
  sysctl.present:
    - name: {{ name }}
    - value: {{ value }}
    - config: /etc/sysctl.d/99-kubeha.conf
    - require:
      - sls: {{ tplroot }}.node.modules
{%- endfor %}
