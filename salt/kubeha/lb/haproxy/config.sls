# -*- coding: utf-8 -*-
# vim: ft=sls
# HAProxy on every control plane: TCP on the LB port, TLS /readyz checks (docs/facts.md #9),
# timings from the model. The candidate file must pass `haproxy -c` before it is used.
{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as kubeha with context %}
{%- from tplroot ~ "/config_files.jinja" import config_files with context %}
{%- if 'haproxy' not in config_files %}
{{- raise('kubeha.lb.haproxy applies to control planes of clusters with kubeha:vip:provider: keepalived-haproxy; ' ~ grains.id ~ ' is not one.') }}
{%- endif %}
{%- set f = config_files['haproxy'] %}

include:
  - {{ tplroot }}.lb.haproxy.install

kubeha-lb-haproxy-config-file-managed:
  file.managed:
    - name: {{ f.path }}
    - source: {{ f.source }}
    - template: jinja
    - user: root
    - group: haproxy
    - mode: '{{ f.mode }}'
    - check_cmd: {{ f.check }}
    - tmp_dir: /etc/haproxy
    - context:
        kubeha: {{ kubeha | json }}
    - require:
      - sls: {{ tplroot }}.lb.haproxy.install
