# -*- coding: utf-8 -*-
# vim: ft=sls
# Unhold and remove the kube packages and their apt source (after kubeadm reset).
{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as kubeha with context %}
{%- set p = kubeha.packages %}

kubeha-packages-clean-kube-unheld:
  pkg.unheld:
    - pkgs: {{ p.names | json }}

kubeha-packages-clean-kube-removed:
  pkg.removed:
    - pkgs: {{ p.names | json }}
    - require:
      - pkg: kubeha-packages-clean-kube-unheld

kubeha-packages-clean-repo-source-absent:
  file.absent:
    - name: /etc/apt/sources.list.d/kubernetes.list
    - require:
      - pkg: kubeha-packages-clean-kube-removed

kubeha-packages-clean-repo-key-absent:
  file.absent:
    - name: {{ p.keyring_dir }}/kubernetes-apt-keyring.asc
    - require:
      - pkg: kubeha-packages-clean-kube-removed
