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
{%- set loadable = salt['file.file_exists']('/proc/modules') %}
{%- for module in kubeha.node.kernel_modules %}

kubeha-node-module-{{ module }}-loaded:
{%-   if loadable %}
  kmod.present:
    - name: {{ module }}
{%-   else %}
  # A kernel without loadable-module support (no /proc/modules, so no lsmod): the module
  # must be built in. modprobe resolves built-ins through modules.builtin and says clearly
  # when one is missing. The name is validated (kubeha_rules_strings) and quoted.
  cmd.run:
    - name: modprobe -- {{ module | quote }}
    - unless: modprobe --dry-run --quiet -- {{ module | quote }}
    - timeout: 60
{%-   endif %}
{%- endfor %}
