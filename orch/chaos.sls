# -*- coding: utf-8 -*-
# vim: ft=sls
# One chaos scenario on a healthy cluster, measured as users feel it, judged against the
# SLOs in pillar and written to the cluster's chaos report:
#
#   salt-run state.orch orch.chaos pillar='{"cluster": "lab", "scenario": "etcd-stop", "target": "vip-holder", "duration": 30}'
#   salt-run state.orch orch.chaos pillar='{"cluster": "lab", "scenario": "etcd-stop", "target": "cp-2,cp-3", "force": true}'
#
# Scenarios: apiserver-stop, apiserver-hang, node-isolate, power-off, netem, etcd-stop,
# leader-kill. Targets: a control plane's name, vip-holder, etcd-leader, lease-holder,
# random, or several joined by commas. Optional: force (below etcd quorum), component
# (leader-kill: kube-controller-manager or kube-scheduler), delay/jitter/loss (netem),
# label and profile (report row), out_dir, lead_in and settle (seconds probed before and
# after the fault; default kubeha:chaos:lead_in/settle).
# Everything happens in the kubeha_chaos runner: it refuses (changing nothing) unless the
# cluster's pillar allows chaos, the cluster passes the final gate and etcd keeps quorum;
# every fault is undone by its node after the duration even if this run dies; the run ends
# with the final gate.
{%- set cluster = pillar.get('cluster') %}
{%- set scenario = pillar.get('scenario') %}
{%- if not cluster or not scenario %}
{{- raise('orch.chaos: say which cluster and scenario: salt-run state.orch orch.chaos pillar=\'{"cluster": "<name>", "scenario": "apiserver-stop"}\'') }}
{%- endif %}
{%- set options = {} %}
{%- for key in ('target', 'duration', 'force', 'component', 'delay', 'jitter', 'loss', 'label', 'profile', 'out_dir', 'lead_in', 'settle') %}
{%-   if key in pillar %}
{%-     do options.update({key: pillar[key]}) %}
{%-   endif %}
{%- endfor %}

{{ ("kubeha-chaos-" ~ cluster ~ "-" ~ scenario) | tojson }}:
  salt.runner:
    - name: kubeha_chaos.run
    - cluster: {{ cluster | tojson }}
    - scenario: {{ scenario | tojson }}
{%- for key, value in options | dictsort %}
    - {{ key }}: {{ value | tojson }}
{%- endfor %}
