# -*- coding: utf-8 -*-
# vim: ft=sls
# overlay for containerd's snapshotter, br_netfilter so bridged pod traffic crosses
# iptables (the net.bridge.* sysctls exist only once it is loaded).
{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as kubeha with context %}

kubeha-node-modules-load-file-managed:
  file.managed:
    - name: /etc/modules-load.d/kubeha.conf
    - mode: '0644'
    - contents: |
        # Managed by Salt (kubeha): loaded at boot for containerd and kube-proxy/CNI.
{%- for module in kubeha.node.kernel_modules %}
        {{ module }}
{%- endfor %}
{%- for module in kubeha.node.kernel_modules %}

kubeha-node-module-{{ module }}-loaded:
  kmod.present:
    - name: {{ module }}
{%- endfor %}
