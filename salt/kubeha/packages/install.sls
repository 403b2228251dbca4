# -*- coding: utf-8 -*-
# vim: ft=sls
# kubeadm, kubelet, kubectl, cri-tools at the pinned pkgs.k8s.io version, held so that a
# routine apt upgrade never moves them (the upgrade orchestration unholds, installs,
# holds again: FACTS 3).
{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as kubeha with context %}
{%- set p = kubeha.packages %}

include:
  - {{ tplroot }}.packages.repo

kubeha-packages-kube-installed:
  pkg.installed:
    - pkgs:
{%- for name, version in kubeha.derived.packages | dictsort %}
      - {{ name }}: '{{ version }}'
{%- endfor %}
    - hold: {{ p.hold }}
    - update_holds: True
    - require:
      - cmd: kubeha-packages-repo-index-refreshed
      - file: kubeha-packages-repo-source-managed

# Enabled, not started: the kubelet crash-loops until kubeadm init/join writes its config,
# and kubeadm starts it itself.
kubeha-packages-kubelet-service-enabled:
  service.enabled:
    - name: kubelet
    - require:
      - pkg: kubeha-packages-kube-installed
