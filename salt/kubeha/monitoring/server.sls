# -*- coding: utf-8 -*-
# vim: ft=sls
# Prometheus on the monitoring host. Applied by orch.monitoring (runner
# kubeha_monitoring.setup), which passes what this host cannot compile itself (it carries no
# kubeha_cluster grain, so no cluster pillar) as pillar kubeha_prometheus: the scrape
# configuration, the rules and the arguments, all rendered on the master from the cluster's
# model; the client certificate is in place before this runs. Every file is checked with
# promtool before it replaces the running one; a config change reloads Prometheus (its head
# block stays), an argument change restarts it.
{%- set p = salt['pillar.get']('kubeha_prometheus', {}) %}
{%- if not p.get('config') %}
{{- raise('kubeha.monitoring.server: no pillar kubeha_prometheus; run it through orch.monitoring: salt-run state.orch orch.monitoring pillar=\'{"cluster": "<name>"}\'') }}
{%- endif %}

kubeha-monitoring-prometheus-installed:
  pkg.installed:
    - name: prometheus
    # Recommends a local node exporter: not needed on this host for the cluster's view.
    - install_recommends: False

# The key was made before the package (and its user) existed on a first run: Prometheus
# must read it; nobody else may.
kubeha-monitoring-prometheus-client-key:
  file.managed:
    - name: /etc/prometheus/kubeha/client.key
    - create: False
    - replace: False
    - user: root
    - group: prometheus
    - mode: '0640'
    - require:
      - pkg: kubeha-monitoring-prometheus-installed

kubeha-monitoring-prometheus-rules:
  file.managed:
    - name: /etc/prometheus/kubeha-rules.yml
    - mode: '0644'
    - contents: {{ p.rules | yaml_encode }}
    - check_cmd: promtool check rules
    - require:
      - pkg: kubeha-monitoring-prometheus-installed

kubeha-monitoring-prometheus-config:
  file.managed:
    - name: /etc/prometheus/prometheus.yml
    - mode: '0644'
    - contents: {{ p.config | yaml_encode }}
    - check_cmd: promtool check config --syntax-only
    - require:
      - file: kubeha-monitoring-prometheus-rules
      - file: kubeha-monitoring-prometheus-client-key

kubeha-monitoring-prometheus-args:
  file.managed:
    - name: /etc/default/prometheus
    - mode: '0644'
    - contents: |
        # Managed by Salt (kubeha.monitoring.server).
        ARGS="{{ p.args }}"
    - require:
      - pkg: kubeha-monitoring-prometheus-installed

kubeha-monitoring-prometheus-running:
  service.running:
    - name: prometheus
    - enable: True
    - reload: True
    - watch:
      - file: kubeha-monitoring-prometheus-rules
      - file: kubeha-monitoring-prometheus-config

kubeha-monitoring-prometheus-restarted:
  cmd.run:
    - name: systemctl restart prometheus
    # A reload keeps scrape pools it could not create (an unreadable key): restart.
    - onchanges:
      - file: kubeha-monitoring-prometheus-args
      - file: kubeha-monitoring-prometheus-client-key
    - require:
      - service: kubeha-monitoring-prometheus-running
