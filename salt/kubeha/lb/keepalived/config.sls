# -*- coding: utf-8 -*-
# vim: ft=sls
# keepalived holds the VIP where the local HAProxy has a ready apiserver behind it. The
# config carries the VRRP secret: root-only. `keepalived --config-test` runs on the candidate.
{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as kubeha with context %}
{%- from tplroot ~ "/config_files.jinja" import config_files with context %}
{%- if 'keepalived' not in config_files %}
{{- raise('kubeha.lb.keepalived applies to control planes of clusters with kubeha:vip:provider: keepalived-haproxy; ' ~ grains.id ~ ' is not one.') }}
{%- endif %}

include:
  - {{ tplroot }}.lb.keepalived.install
{%- for key in ['keepalived-notify', 'keepalived'] %}
{%-   set f = config_files[key] %}

kubeha-lb-{{ key }}-file-managed:
  file.managed:
    - name: {{ f.path }}
    - source: {{ f.source }}
    - template: jinja
    - user: root
    - group: root
    - mode: '{{ f.mode }}'
{%-   if f.check is defined %}
    - check_cmd: {{ f.check }}
    - tmp_dir: /etc/keepalived
{%-   endif %}
    - show_changes: False
    - context:
        kubeha: {{ kubeha | json }}
    - require:
      - sls: {{ tplroot }}.lb.keepalived.install
{%- endfor %}
