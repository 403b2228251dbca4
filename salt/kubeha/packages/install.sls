# -*- coding: utf-8 -*-
# vim: ft=sls
# kubeadm, kubelet, kubectl at the pinned pkgs.k8s.io version (cri-tools at its minor's own,
# unless packages:versions pins it), held so that a
# routine apt upgrade never moves them (the upgrade orchestration unholds, installs,
# holds again: docs/facts.md #3).
{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as kubeha with context %}
{%- set p = kubeha.packages %}

include:
  - {{ tplroot }}.packages.repo

{%- set pinned = kubeha.derived.packages | dictsort | selectattr(1) | list %}
{%- set unpinned = kubeha.derived.packages | dictsort | rejectattr(1) | map(attribute=0) | list %}
{%- if unpinned %}

# Not held: kubeadm's package depends on its minor's cri-tools (cri-tools (>= 1.31.0) for
# kubeadm 1.31), so installing the next kubeadm must be free to upgrade it. Holding only
# kubeadm, kubelet and kubectl is what the upstream guide does.
kubeha-packages-tools-installed:
  pkg.installed:
    - pkgs: {{ unpinned | json }}
    - hold: False
    - update_holds: True
    - require:
      - cmd: kubeha-packages-repo-index-refreshed
      - file: kubeha-packages-repo-source-managed
    - require_in:
      - pkg: kubeha-packages-kube-installed
{%- endif %}

kubeha-packages-kube-installed:
  pkg.installed:
    - pkgs:
{%- for name, version in pinned %}
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
