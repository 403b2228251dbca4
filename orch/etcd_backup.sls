# -*- coding: utf-8 -*-
# vim: ft=sls
# One etcd backup to object storage, then the retention (docs/pillar.md, backup:):
#
#   salt-run state.orch orch.etcd_backup pillar='{"cluster": "lab"}'
#
# Hourly from the master's scheduler (docs/examples/master.d/kubeha.conf). The snapshot is
# taken on a healthy follower, verified (SHA-256 trailer, etcdutl snapshot status), stored
# with the encrypted PKI and a manifest; pruning runs only after a backup succeeded, and
# never removes the newest verified set. A failure fails the step, fires
# kubeha/backup/<cluster>/failed and shows in `salt-run kubeha_status.day2 <cluster>`.
{%- set cluster = pillar.get('cluster') %}
{%- if not cluster %}
{{- raise('orch.etcd_backup: say which cluster: salt-run state.orch orch.etcd_backup pillar=\'{"cluster": "<name>"}\'') }}
{%- endif %}
{%- set prefix = 'kubeha-etcd-backup-' ~ cluster %}

{{ (prefix ~ '-take') | tojson }}:
  salt.runner:
    - name: kubeha_backup.take
    - cluster: {{ cluster | tojson }}
    - reason: {{ pillar.get('reason', 'manual') | tojson }}

{{ (prefix ~ '-prune') | tojson }}:
  salt.runner:
    - name: kubeha_backup.prune
    - cluster: {{ cluster | tojson }}
    - require:
      - salt: {{ (prefix ~ '-take') | tojson }}
