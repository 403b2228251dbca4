# -*- coding: utf-8 -*-
# vim: ft=sls
# Converge one node: every node gets the node prep, containerd, the pinned kube packages
# and its kubeadm configuration; control planes also get the VIP provider.
# `kubeadm init/join` are orchestration steps (orch.bootstrap), not part of this state.
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as kubeha with context %}
{%- if kubeha.derived.node is none %}
{{- raise('kubeha: minion ' ~ grains.id ~ ' is not listed in kubeha:control_plane or kubeha:workers of cluster ' ~ kubeha.cluster.name ~ '; add it (name, ip) or remove the kubeha_cluster grain from it.') }}
{%- endif %}

include:
  - .node
  - .containerd
  - .packages
  - .kubeadm
{%- if kubeha.derived.is_control_plane %}
  - .etcd
  - .lb
  - .security
  - .day2
  - .monitoring
{%- endif %}
