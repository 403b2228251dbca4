# -*- coding: utf-8 -*-
# vim: ft=sls
# Disaster restore: every etcd member of the cluster restored from ONE named backup, by the
# upstream procedure for stacked members (docs/facts.md #17): apiservers stopped, etcd
# stopped, each data dir moved aside and restored with its own name and peer URL, a new
# cluster token, --bump-revision/--mark-compacted; etcd, apiservers, controller-manager,
# scheduler and kubelets started again; the final gate.
#
#   salt-run kubeha_backup.sets lab                       # which backups there are
#   salt-run state.orch orch.etcd_restore pillar='{"cluster": "lab", "stamp": "20260101T120000Z", "confirm": true}'
#
# Every object written after the backup is lost: refused unless confirm is true and the
# backup is named. bump_revision (default 1000000000) needs etcdutl >= 3.5.10; 0 skips it.
{%- set cluster = pillar.get('cluster') %}
{%- if not cluster or not pillar.get('stamp') or pillar.get('confirm') is not sameas true %}
{{- raise('orch.etcd_restore rewinds the whole cluster to a backup: name it and confirm: salt-run state.orch orch.etcd_restore pillar=\'{"cluster": "<name>", "stamp": "<backup>", "confirm": true}\' (salt-run kubeha_backup.sets <name> lists them). Nothing was changed.') }}
{%- endif %}

{{ ('kubeha-etcd-restore-' ~ cluster) | tojson }}:
  salt.runner:
    - name: kubeha_restore.run
    - cluster: {{ cluster | tojson }}
    - stamp: {{ pillar['stamp'] | string | tojson }}
    - confirm: true
{%- if 'bump_revision' in pillar %}
    - bump_revision: {{ pillar['bump_revision'] | int }}
{%- endif %}
