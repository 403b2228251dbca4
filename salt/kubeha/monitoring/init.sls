# -*- coding: utf-8 -*-
# vim: ft=sls
# Monitoring on a control plane (monitoring:enabled): node exporter with the kubeha_*
# textfile metrics. HAProxy's exporter port is part of kubeha.lb, etcd's metrics listener and
# the KCM/scheduler bind address part of the kubeadm configuration. The Prometheus host is
# set up by orch.monitoring (kubeha.monitoring.server), not by a control plane's highstate.
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as kubeha with context %}
{%- if kubeha.monitoring.enabled %}
include:
  - .node
{%- else %}

# Turned off: the minion stops writing the textfile metrics (node exporter, if installed,
# is left to the site: other tools may scrape it).
kubeha-monitoring-textfile-unscheduled:
  schedule.absent:
    - name: kubeha-textfile
{%- endif %}
