# -*- coding: utf-8 -*-
# vim: ft=sls
# Certificate renewal before expiry: every control plane with kubeadm certificates below
# kubeha:certs:renew_before_days, one at a time: etcd leadership away, out of the HAProxy
# pools, `kubeadm certs renew all`, static pods restarted, gate (etcd, /readyz, the new
# expiry on disk and on the wire), back in; then the master's admin kubeconfig refreshed.
# A CA below the threshold is reported (kubeha/certs/<cluster>/ca-expiring), not renewed.
#
#   salt-run state.orch orch.certs_renew pillar='{"cluster": "lab"}'
#
# Started by the kubeha_certs beacon through salt/reactor/certs.sls (reason: beacon: one run
# per cluster at a time, certs:cooldown_hours apart).
{%- set cluster = pillar.get('cluster') %}
{%- if not cluster %}
{{- raise('orch.certs_renew: say which cluster: salt-run state.orch orch.certs_renew pillar=\'{"cluster": "<name>"}\'') }}
{%- endif %}
{%- set reason = pillar.get('reason', 'manual') %}
{%- if reason not in ('manual', 'beacon') %}
{{- raise('orch.certs_renew: reason must be manual or beacon') }}
{%- endif %}

{{ ('kubeha-certs-renew-' ~ cluster) | tojson }}:
  salt.runner:
    - name: kubeha_certs.renew
    - cluster: {{ cluster | tojson }}
    - reason: {{ reason | tojson }}
{%- if pillar.get('trigger') %}
    - trigger: {{ pillar['trigger'] | string | tojson }}
{%- endif %}
