# -*- coding: utf-8 -*-
# vim: ft=sls
# Rolling upgrade, one node at a time (runbook step 9, corrected: docs/facts.md #2, #3, #12):
#
#   salt-run state.orch orch.upgrade pillar='{"cluster": "lab", "version": "1.31.0"}'
#   salt-run state.orch orch.upgrade pillar='{"cluster": "lab", "dry_run": true}'
#
# precheck (pillar, final gate, the target in every node's repository) -> etcd snapshot and
# PKI copied to the master -> the probe started (chaos:probe_minion) -> for each hop of one
# minor: each control plane in upgrade:order, then the workers, each node's pass
# (kubeha_upgrade_node) then the error budget gate, each requiring the previous one -> the
# final gate -> the report (the probe stopped and summarized). A node that fails is rolled back and the run
# stops there, the cluster serving. A backwards or unavailable target is refused here, while
# the file renders, before any step. Re-running skips the nodes already upgraded.
{%- set cluster = pillar.get('cluster') %}
{%- if not cluster %}
{{- raise('orch.upgrade: say which cluster: salt-run state.orch orch.upgrade pillar=\'{"cluster": "<name>", "version": "1.31.0"}\'.') }}
{%- endif %}
{%- set check = salt.saltutil.runner('kubeha.check', cluster=cluster, pillar_override=pillar) %}
{%- if check is not mapping or not check.result %}
{{- raise('orch.upgrade stopped before any step: ' ~ (check.comment if check is mapping else check)) }}
{%- endif %}
{%- set plan = salt.saltutil.runner('kubeha_upgrade.plan', cluster=cluster, version=pillar.get('version'), pillar_override=pillar) %}
{%- if plan is not mapping or 'hops' not in plan %}
{{- raise('orch.upgrade stopped before any step: ' ~ plan) }}
{%- endif %}
{%- set prefix = 'kubeha-upgrade-' ~ cluster %}
{%- if pillar.get('dry_run') or not plan.hops %}

{{ prefix }}-plan:
  test.show_notification:
    - text: |
        {{ cluster }}: {{ plan['from'] }} -> {{ plan['to'] }}{{ ' (nothing to do)' if not plan.hops else '' }}
{%-   for hop in plan.hops %}
        hop to {{ hop.version }}:
{%-     for group in hop.groups %}
          {{ group.role }} {{ group.nodes | join(', ') }}{{ ' (kubeadm upgrade apply)' if group.first else '' }}{{ ' - already there, skipped' if group.skip else '' }}: {{ group.steps | join(' > ') }}
{%-     endfor %}
{%-   endfor %}
{%- else %}

{{ prefix }}-precheck:
  salt.runner:
    - name: kubeha_upgrade.precheck
    - cluster: {{ cluster }}
    - version: {{ plan['to'] }}

{{ prefix }}-backup:
  salt.runner:
    - name: kubeha_upgrade.backup
    - cluster: {{ cluster }}
    - require:
      - salt: {{ prefix }}-precheck

{{ prefix }}-start:
  salt.runner:
    - name: kubeha_upgrade_run.start
    - cluster: {{ cluster }}
    - version: {{ plan['to'] }}
    - require:
      - salt: {{ prefix }}-backup
{%-   set ns = namespace(previous=prefix ~ '-start') %}
{%-   for hop in plan.hops %}
{%-     for group in hop.groups if not group.skip %}
{%-       for node in group.nodes %}
{%-         set step = prefix ~ '-' ~ hop.version ~ '-' ~ node %}

{{ step }}:
  salt.runner:
{%-         if group.role == 'control-plane' %}
    - name: kubeha_upgrade_node.control_plane
    - first: {{ group.first | tojson }}
{%-         else %}
    - name: kubeha_upgrade_node.worker
{%-         endif %}
    - cluster: {{ cluster }}
    - node: {{ node }}
    - version: {{ hop.version }}
    - require:
      - salt: {{ ns.previous }}

# What clients saw so far through the VIP, against upgrade:max_failed_requests and
# upgrade:max_stall_seconds: a breach stops the run before the next node.
{{ step }}-budget:
  salt.runner:
    - name: kubeha_upgrade_run.budget
    - cluster: {{ cluster }}
    - require:
      - salt: {{ step }}
{%-         set ns.previous = step ~ '-budget' %}
{%-       endfor %}
{%-     endfor %}
{%-   endfor %}

{{ prefix }}-final-gate:
  salt.runner:
    - name: kubeha_gate.final
    - cluster: {{ cluster }}
    - require:
      - salt: {{ ns.previous }}

# Written whatever happened above: a stopped run's report says where and why.
{{ prefix }}-report:
  salt.runner:
    - name: kubeha_upgrade_run.report
    - cluster: {{ cluster }}
{%- if pillar.get('report_dir') %}
    - out_dir: {{ pillar.report_dir | tojson }}
{%- endif %}
    - require:
      - salt: {{ prefix }}-start
{%- endif %}
