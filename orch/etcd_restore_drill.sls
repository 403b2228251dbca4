# -*- coding: utf-8 -*-
# vim: ft=sls
# The restore drill: the newest backup (or `stamp`) fetched, verified, restored into a
# scratch single-member etcd on the drill host and compared with the live cluster, then
# removed; a report in the report directory (drill-<cluster>.{json,md}).
#
#   salt-run state.orch orch.etcd_restore_drill pillar='{"cluster": "lab"}'
#   salt-run state.orch orch.etcd_restore_drill pillar='{"cluster": "lab", "stamp": "20260101T120000Z"}'
#
# Weekly from the master's scheduler (docs/examples/master.d/kubeha.conf); the runbook asks
# for at least one per quarter. Changes nothing on the live cluster.
{%- set cluster = pillar.get('cluster') %}
{%- if not cluster %}
{{- raise('orch.etcd_restore_drill: say which cluster: salt-run state.orch orch.etcd_restore_drill pillar=\'{"cluster": "<name>"}\'') }}
{%- endif %}

{{ ('kubeha-etcd-restore-drill-' ~ cluster) | tojson }}:
  salt.runner:
    - name: kubeha_drill.run
    - cluster: {{ cluster | tojson }}
{%- if pillar.get('stamp') %}
    - stamp: {{ pillar['stamp'] | string | tojson }}
{%- endif %}
{%- if pillar.get('host') %}
    - host: {{ pillar['host'] | string | tojson }}
{%- endif %}
