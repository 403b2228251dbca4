# -*- coding: utf-8 -*-
# vim: ft=sls
# The cluster's CNI, applied through the API from a control plane once the cluster exists
# (orch.bootstrap runs this on the init node after `kubeadm init`). Not part of highstate:
# before init there is no API to apply to.
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as kubeha with context %}
{%- from tplroot ~ "/config_files.jinja" import config_files with context %}
{%- if not kubeha.derived.is_control_plane %}
{{- raise('kubeha.cni applies from a control plane; ' ~ grains.id ~ ' is not one.') }}
{%- endif %}
{%- if 'cni' in config_files %}
{%-   set f = config_files['cni'] %}
{#-   Every call is bounded: each request by kubectl's --request-timeout, the whole command
      (and the unless/onlyif checks) by the state's timeout. #}
{%-   set kubectl = 'kubectl --kubeconfig=/etc/kubernetes/admin.conf --request-timeout=30s' %}

kubeha-cni-manifest-file-managed:
  file.managed:
    - name: {{ f.path }}
    - source: {{ f.source }}
    - template: jinja
    - mode: '{{ f.mode }}'
    - makedirs: True
    - dir_mode: '0700'
    - context:
        kubeha: {{ kubeha | json }}

# A changed manifest is re-applied over the objects already there; missing objects are
# created. Ordered so that a first run applies once.
kubeha-cni-manifest-reapplied-on-change:
  cmd.run:
    - name: {{ kubectl }} apply -f {{ f.path }}
    - onchanges:
      - file: kubeha-cni-manifest-file-managed
    - onlyif: {{ kubectl }} get -f {{ f.path }}
    - timeout: 120

kubeha-cni-manifest-applied:
  cmd.run:
    - name: {{ kubectl }} apply -f {{ f.path }}
    - unless: {{ kubectl }} get -f {{ f.path }}
    - timeout: 120
    - require:
      - file: kubeha-cni-manifest-file-managed
      - cmd: kubeha-cni-manifest-reapplied-on-change
{%- else %}

kubeha-cni-none:
  test.show_notification:
    - text: "kubeha:cni:provider is none: install your CNI; nodes stay NotReady until then."
{%- endif %}
