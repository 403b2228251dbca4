# -*- coding: utf-8 -*-
# vim: ft=sls
# The kubelet refuses to start with swap on (unless configured otherwise): swap off now,
# and out of /etc/fstab so it stays off after a reboot.
{%- set tplroot = tpldir.split("/")[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as kubeha with context %}

kubeha-node-swap-off-now:
  cmd.run:
    - name: swapoff -a
    - timeout: 120
    - onlyif: test -n "$(swapon --show --noheadings)"

kubeha-node-swap-fstab-commented:
  file.replace:
    - name: /etc/fstab
    - pattern: '^([^#\s]\S*\s+\S+\s+swap\s.*)$'
    - repl: '# swap disabled by kubeha (kubelet): \1'
    - flags: ['MULTILINE']
    - ignore_if_missing: True
    - backup: False
