# -*- coding: utf-8 -*-
# vim: ft=sls
# node exporter on this control plane's address, and the kubeha_* textfile metrics written
# by the minion's own scheduler (kubeha_textfile.write every monitoring:textfile_interval
# seconds): they keep coming while the master is down.
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as kubeha with context %}
{%- set mon = kubeha.monitoring %}
{%- set vip = kubeha.vip.address if kubeha.derived.is_control_plane else '' %}

kubeha-monitoring-node-exporter-installed:
  pkg.installed:
    - name: prometheus-node-exporter
    # Its Recommends (prometheus-node-exporter-collectors) add timers that run apt and
    # smartctl scripts on every node: not wanted on a control plane.
    - install_recommends: False

kubeha-monitoring-textfile-dir:
  file.directory:
    - name: {{ mon.textfile_dir }}
    - mode: '0755'
    - makedirs: True

kubeha-monitoring-node-exporter-args:
  file.managed:
    - name: /etc/default/prometheus-node-exporter
    - mode: '0644'
    - contents: |
        # Managed by Salt (kubeha.monitoring.node).
        ARGS="--web.listen-address={{ kubeha.derived.node.ip }}:{{ mon.node_exporter_port }} --collector.textfile.directory={{ mon.textfile_dir }}"
    - require:
      - pkg: kubeha-monitoring-node-exporter-installed

kubeha-monitoring-node-exporter-running:
  service.running:
    - name: prometheus-node-exporter
    - enable: True
    - watch:
      - file: kubeha-monitoring-node-exporter-args

kubeha-monitoring-textfile-scheduled:
  schedule.present:
    - name: kubeha-textfile
    - function: kubeha_textfile.write
    - seconds: {{ mon.textfile_interval }}
    - job_kwargs:
        textfile_dir: {{ mon.textfile_dir }}
        vip: '{{ vip }}'
    - maxrunning: 1
    # The metrics are the result: no return to the master every few seconds.
    - return_job: False
    - run_on_start: True
    - require:
      - file: kubeha-monitoring-textfile-dir
