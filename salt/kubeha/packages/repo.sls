# -*- coding: utf-8 -*-
# vim: ft=sls
# The pkgs.k8s.io repository of this cluster's minor, trusted through its own key only
# (signed-by), never through apt's global keyring (docs/facts.md #3).
{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as kubeha with context %}
{%- from tplroot ~ "/config_files.jinja" import config_files with context %}
{%- set p = kubeha.packages %}
{%- set repo = p.repo_base ~ '/core:/stable:/' ~ kubeha.derived.repo_minor ~ '/deb/' %}
{%- set f = config_files['apt-source'] %}

kubeha-packages-keyring-dir-managed:
  file.directory:
    - name: {{ p.keyring_dir }}
    - mode: '0755'

kubeha-packages-repo-key-managed:
  file.managed:
    - name: {{ p.keyring_dir }}/kubernetes-apt-keyring.asc
    - source: {{ repo }}Release.key
{%- if p.key_hash %}
    - source_hash: {{ p.key_hash }}
{%- else %}
    - skip_verify: True
{%- endif %}
    - mode: '0644'
    - require:
      - file: kubeha-packages-keyring-dir-managed

kubeha-packages-repo-source-managed:
  file.managed:
    - name: {{ f.path }}
    - source: {{ f.source }}
    - template: jinja
    - mode: '{{ f.mode }}'
    - context:
        kubeha: {{ kubeha | json }}
    - require:
      - file: kubeha-packages-repo-key-managed

kubeha-packages-repo-index-refreshed:
  cmd.run:
    - name: apt-get update -qq
    - timeout: 600
    - onchanges:
      - file: kubeha-packages-repo-key-managed
      - file: kubeha-packages-repo-source-managed
