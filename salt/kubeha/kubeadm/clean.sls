# -*- coding: utf-8 -*-
# vim: ft=sls
# Remove kubeha's kubeadm inputs. Does not run `kubeadm reset` (an orchestration step).
{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as kubeha with context %}
{%- from tplroot ~ "/config_files.jinja" import config_files with context %}

kubeha-kubeadm-clean-config-dir-absent:
  file.absent:
    - name: {{ kubeha.kubeadm.config_dir }}
