# -*- coding: utf-8 -*-
# vim: ft=sls
# A generated config.toml: SystemdCgroup = true, CRI enabled, kubeadm's pause image (docs/facts.md #4).
{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as kubeha with context %}
{%- from tplroot ~ "/config_files.jinja" import config_files with context %}
{%- set f = config_files['containerd'] %}

include:
  - {{ tplroot }}.containerd.install

kubeha-containerd-config-file-managed:
  file.managed:
    - name: {{ f.path }}
    - source: {{ f.source }}
    - template: jinja
    - mode: '{{ f.mode }}'
    - makedirs: True
    - context:
        kubeha: {{ kubeha | json }}
    - require:
      - sls: {{ tplroot }}.containerd.install
