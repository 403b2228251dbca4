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

{%- set lua = config_files['haproxy-cut'] %}

include:
  - {{ tplroot }}.lb.haproxy.install

# The Lua task haproxy.cfg loads unless kubeha:haproxy:cut_sessions_after_down is 0: in
# place before the candidate config is checked, since `haproxy -c` loads it too.
kubeha-lb-haproxy-cut-file-managed:
  file.managed:
    - name: {{ lua.path }}
    - source: {{ lua.source }}
    - template: jinja
    - user: root
    - group: haproxy
    - mode: '{{ lua.mode }}'
    - context:
        kubeha: {{ kubeha | json }}
    - require:
      - sls: {{ tplroot }}.lb.haproxy.install

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
      - file: kubeha-lb-haproxy-cut-file-managed
