# -*- coding: utf-8 -*-
# vim: ft=sls
# Stop containerd and remove it with kubeha's config. Only on a node taken out of the
# cluster (kubeadm reset first): running pods die with it.
{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as kubeha with context %}
{%- from tplroot ~ "/config_files.jinja" import config_files with context %}

kubeha-containerd-clean-service-dead:
  service.dead:
    - name: containerd
    - enable: False

kubeha-containerd-clean-config-file-absent:
  file.absent:
    - name: /etc/containerd/config.toml
    - require:
      - service: kubeha-containerd-clean-service-dead

kubeha-containerd-clean-package-removed:
  pkg.removed:
    - name: {{ kubeha.containerd.package }}
    - require:
      - service: kubeha-containerd-clean-service-dead
