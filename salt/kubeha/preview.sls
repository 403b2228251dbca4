# -*- coding: utf-8 -*-
# vim: ft=sls
# Render every configuration file this node would get into a directory, without touching
# the live ones, for review before a change:
#   salt cp-1 state.apply kubeha.preview pillar='{"kubeha_preview_dir": "/root/preview"}'
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as kubeha with context %}
{%- from tplroot ~ "/config_files.jinja" import config_files with context %}
{%- set root = salt['pillar.get']('kubeha_preview_dir', '/var/tmp/kubeha-preview') %}
{%- for key, f in config_files | dictsort %}

kubeha-preview-{{ key }}-file-managed:
  file.managed:
    - name: {{ root }}{{ f.path }}
    - source: {{ f.source }}
    - template: jinja
    - mode: '0600'
    - makedirs: True
    - dir_mode: '0700'
    - show_changes: False
    - context:
        kubeha: {{ kubeha | json }}
{%- endfor %}
