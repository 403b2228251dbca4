# -*- coding: utf-8 -*-
# vim: ft=sls
# `kubeadm init --upload-certs` on the init node, once (orch.bootstrap runs it there after the
# highstate). The join secrets stay on the node (0600); joins get them sealed per minion.
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as kubeha with context %}
{%- if not kubeha.derived.is_init_node %}
{{- raise('kubeha.kubeadm.initialized runs on the init node ' ~ kubeha.derived.init_node ~ ' (first of kubeha:control_plane), not on ' ~ grains.id ~ '.') }}
{%- endif %}

include:
  - {{ tplroot }}.kubeadm.config

kubeha-kubeadm-cluster-initialized:
  kubeadm.initialized:
    - name: {{ kubeha.kubeadm.config_dir }}/kubeadm-config.yaml
    - upload_certs: True
{%- if kubeha.kubeadm.ignore_preflight_errors %}
    - ignore_preflight_errors: {{ kubeha.kubeadm.ignore_preflight_errors | join(',') }}
{%- endif %}
    - require:
      - sls: {{ tplroot }}.kubeadm.config
