# -*- coding: utf-8 -*-
# vim: ft=sls
# Build a cluster from bare nodes, one gated step at a time:
#
#   salt-run state.orch orch.bootstrap pillar='{"cluster": "lab"}'
#   salt-run state.orch orch.bootstrap pillar='{"cluster": "lab", "adopt": true}'
#
# prechecks (pillar valid, nodes answer, no foreign cluster) -> highstate -> kubeadm init on
# the first control plane -> CNI -> each other control plane joins, one at a time, each
# gated on etcd (all members healthy) and /readyz of every joined apiserver -> workers ->
# the join secrets deleted -> highstate again (HAProxy now verifies the cluster CA) -> the
# final gate.
# Every step is idempotent: on a built cluster the run changes nothing and says so.
# A failed step stops the run; the nodes already joined keep serving.
{%- set cluster = pillar.get('cluster') %}
{%- if not cluster %}
{{- raise('orch.bootstrap: say which cluster: salt-run state.orch orch.bootstrap pillar=\'{"cluster": "<name>"}\' (the kubeha_cluster grain of its nodes).') }}
{%- endif %}
{#- The model is validated here, on the master, before the first step: a bad pillar stops
    the run with the same messages the states give. #}
{%- set check = salt.saltutil.runner('kubeha.check', cluster=cluster, pillar_override=pillar) %}
{%- if check is not mapping or not check.result %}
{{- raise('orch.bootstrap stopped before any step: ' ~ (check.comment if check is mapping else check)) }}
{%- endif %}
{%- set m = salt.saltutil.runner('kubeha.model', cluster=cluster, pillar_override=pillar) %}
{%- set cps = m.control_plane | map(attribute='name') | list %}
{%- set workers = (m.workers or []) | map(attribute='name') | list %}
{%- set init = m.derived.init_node %}
{%- set prefix = 'kubeha-bootstrap-' ~ cluster %}

{{ prefix }}-nodes-reachable:
  salt.runner:
    - name: kubeha_gate.reachable
    - cluster: {{ cluster }}

{{ prefix }}-no-foreign-cluster:
  salt.runner:
    - name: kubeha_gate.existing_cluster
    - cluster: {{ cluster }}
    - adopt: {{ pillar.get('adopt', False) | tojson }}
    - require:
      - salt: {{ prefix }}-nodes-reachable

{{ prefix }}-highstate:
  salt.state:
    - tgt: {{ (cps + workers) | join(',') }}
    - tgt_type: list
    - highstate: True
    - timeout: 900
    - require:
      - salt: {{ prefix }}-no-foreign-cluster

{{ prefix }}-init-{{ init }}:
  salt.state:
    - tgt: {{ init }}
    - sls: kubeha.kubeadm.initialized
    - timeout: 900
    - require:
      - salt: {{ prefix }}-highstate

{{ prefix }}-gate-{{ init }}:
  salt.runner:
    - name: kubeha_gate.control_plane_ready
    - cluster: {{ cluster }}
    - nodes: [{{ init }}]
    - require:
      - salt: {{ prefix }}-init-{{ init }}

{{ prefix }}-cni:
  salt.state:
    - tgt: {{ init }}
    - sls: kubeha.cni
    - timeout: 300
    - require:
      - salt: {{ prefix }}-gate-{{ init }}
{%- set ns = namespace(previous=prefix ~ '-cni') %}
{%- for node in cps[1:] %}
{%-   set joined = cps[:loop.index + 1] %}

{{ prefix }}-join-{{ node }}:
  salt.runner:
    - name: kubeha_join.join
    - cluster: {{ cluster }}
    - node: {{ node }}
    - require:
      - salt: {{ ns.previous }}

{{ prefix }}-gate-{{ node }}:
  salt.runner:
    - name: kubeha_gate.control_plane_ready
    - cluster: {{ cluster }}
    - nodes: {{ joined | tojson }}
    - require:
      - salt: {{ prefix }}-join-{{ node }}
{%-   set ns.previous = prefix ~ '-gate-' ~ node %}
{%- endfor %}
{%- for node in workers %}

{{ prefix }}-join-{{ node }}:
  salt.runner:
    - name: kubeha_join.join
    - cluster: {{ cluster }}
    - node: {{ node }}
    - require:
      - salt: {{ ns.previous }}
{%-   set ns.previous = prefix ~ '-join-' ~ node %}
{%- endfor %}

# Every node joined: the join token, the uploaded certificates (kubeadm-certs) and the
# stored join data are deleted now rather than when they expire.
{{ prefix }}-join-secrets-forgotten:
  salt.runner:
    - name: kubeha_join.forget
    - cluster: {{ cluster }}
    - require:
      - salt: {{ ns.previous }}

# With the cluster CA in place, HAProxy's checks verify the apiservers' certificates.
{{ prefix }}-highstate-after-join:
  salt.state:
    - tgt: {{ (cps + workers) | join(',') }}
    - tgt_type: list
    - highstate: True
    - timeout: 900
    - require:
      - salt: {{ prefix }}-join-secrets-forgotten

{{ prefix }}-final-gate:
  salt.runner:
    - name: kubeha_gate.final
    - cluster: {{ cluster }}
    - require:
      - salt: {{ prefix }}-highstate-after-join
