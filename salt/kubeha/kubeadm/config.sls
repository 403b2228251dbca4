# -*- coding: utf-8 -*-
# vim: ft=sls
# kubeadm's configuration for this control plane (the API its version reads), the audit
# policy the apiserver mounts, and the per-node patches. Root-only: they describe the
# cluster's security settings.
{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as kubeha with context %}
{%- from tplroot ~ "/config_files.jinja" import config_files with context %}
{%- if not kubeha.derived.is_control_plane %}
{{- raise('kubeha.kubeadm applies to control planes only; ' ~ grains.id ~ ' is not one.') }}
{%- endif %}
{%- set audit = kubeha.apiserver.audit %}

kubeha-kubeadm-config-dir-managed:
  file.directory:
    - name: {{ kubeha.kubeadm.config_dir }}
    - user: root
    - group: root
    - mode: '0700'
    - makedirs: True
{%- if audit.enabled %}

kubeha-kubeadm-audit-log-dir-managed:
  file.directory:
    - name: {{ audit.log_dir }}
    - mode: '0700'
    - makedirs: True
{%- endif %}
{%- for key in ['kubeadm-config', 'audit-policy', 'apiserver-bind-patch', 'kubeadm-upgrade-config'] %}
{%-   if key in config_files %}
{%-     set f = config_files[key] %}

kubeha-kubeadm-{{ key }}-file-managed:
  file.managed:
    - name: {{ f.path }}
    - source: {{ f.source }}
    - template: jinja
    - user: root
    - group: root
    - mode: '{{ f.mode }}'
    - makedirs: True
    - dir_mode: '0700'
    - context:
        kubeha: {{ kubeha | json }}
    - require:
      - file: kubeha-kubeadm-config-dir-managed
{%-   endif %}
{%- endfor %}
{%- if 'apiserver-bind-patch' not in config_files %}

kubeha-kubeadm-apiserver-bind-patch-file-absent:
  file.absent:
    - name: {{ kubeha.kubeadm.config_dir }}/patches/kube-apiserver0+json.yaml
{%- endif %}
