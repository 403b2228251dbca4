# -*- coding: utf-8 -*-
# vim: ft=sls
# kubeadm's configuration for this node in the API its version reads: the init config and
# audit policy on control planes, the join config on every node but the init node, and
# per-node patches. Root-only: they describe the cluster's security settings.
{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as kubeha with context %}
{%- from tplroot ~ "/config_files.jinja" import config_files with context %}
{%- set audit = kubeha.apiserver.audit if kubeha.derived.is_control_plane else {'enabled': False} %}

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
{%- for key in ['kubeadm-config', 'kubeadm-join-config', 'audit-policy', 'apiserver-bind-patch', 'kubeadm-upgrade-config'] %}
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
{%- if kubeha.derived.is_control_plane and 'apiserver-bind-patch' not in config_files %}

kubeha-kubeadm-apiserver-bind-patch-file-absent:
  file.absent:
    - name: {{ kubeha.kubeadm.config_dir }}/patches/kube-apiserver0+json.yaml
{%- endif %}
