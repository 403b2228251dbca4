# -*- coding: utf-8 -*-
# vim: ft=sls
# Rolling etcd defrag: followers first, the leader last after handing leadership away, one
# member at a time, each node out of the HAProxy pools during its member's defrag, a health
# gate and a pause between; refused when a member is unhealthy; a NOSPACE alarm compacted,
# defragmented and disarmed.
#
#   salt-run state.orch orch.etcd_defrag pillar='{"cluster": "lab"}'
#
# Also weekly from the master's scheduler, and from the kubeha_etcd_frag beacon through
# salt/reactor/etcd_defrag.sls (reason: beacon: one run per cluster, defrag:cooldown apart).
{%- set cluster = pillar.get('cluster') %}
{%- if not cluster %}
{{- raise('orch.etcd_defrag: say which cluster: salt-run state.orch orch.etcd_defrag pillar=\'{"cluster": "<name>"}\'') }}
{%- endif %}
{%- set reason = pillar.get('reason', 'manual') %}
{%- if reason not in ('manual', 'schedule', 'beacon') %}
{{- raise('orch.etcd_defrag: reason must be manual, schedule or beacon') }}
{%- endif %}

{{ ('kubeha-etcd-defrag-' ~ cluster) | tojson }}:
  salt.runner:
    - name: kubeha_defrag.run
    - cluster: {{ cluster | tojson }}
    - reason: {{ reason | tojson }}
