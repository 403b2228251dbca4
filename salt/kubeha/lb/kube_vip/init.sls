# -*- coding: utf-8 -*-
# vim: ft=sls
# kube-vip as a static pod. On the init node of 1.29+ it reads super-admin.conf until
# `kubeadm init` has finished; re-applying this state afterwards switches it to admin.conf.
{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as kubeha with context %}
{%- from tplroot ~ "/config_files.jinja" import config_files with context %}
{%- if 'kube-vip' not in config_files %}
{{- raise('kubeha.lb.kube_vip applies to control planes of clusters with kubeha:vip:provider: kube-vip; ' ~ grains.id ~ ' is not one.') }}
{%- endif %}
{%- set f = config_files['kube-vip'] %}

kubeha-lb-kube-vip-manifest-managed:
  file.managed:
    - name: {{ f.path }}
    - source: {{ f.source }}
    - template: jinja
    - mode: '{{ f.mode }}'
    - makedirs: True
    - context:
        kubeha: {{ kubeha | json }}
