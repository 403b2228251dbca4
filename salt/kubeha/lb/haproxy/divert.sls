# -*- coding: utf-8 -*-
# vim: ft=sls
# vip_heal:handover_s: the old holder's half of a VIP handover, always in place (a unit that
# sets a mangle rule and a policy route at boot), so the runner's move waits on no extra
# call to an impaired holder. Off (handover_s 0): the unit stopped and removed.
{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as kubeha with context %}
{%- set unit = '/etc/systemd/system/kubeha-vip-divert.service' %}
{%- if kubeha.vip_heal.handover_s %}

kubeha-lb-haproxy-divert-unit-managed:
  file.managed:
    - name: {{ unit }}
    - source: salt://{{ tplroot }}/files/haproxy/kubeha-vip-divert.service.jinja
    - template: jinja
    - mode: '0644'
    - context:
        kubeha: {{ kubeha | json }}

kubeha-lb-haproxy-divert-service-running:
  service.running:
    - name: kubeha-vip-divert
    - enable: True
    - watch:
      - file: kubeha-lb-haproxy-divert-unit-managed
{%- else %}

kubeha-lb-haproxy-divert-service-dead:
  service.dead:
    - name: kubeha-vip-divert
    - enable: False
    - onlyif: test -e {{ unit }}

kubeha-lb-haproxy-divert-unit-absent:
  file.absent:
    - name: {{ unit }}
    - require:
      - service: kubeha-lb-haproxy-divert-service-dead
{%- endif %}
