# -*- coding: utf-8 -*-
# vim: ft=sls
# Prometheus on the cluster's monitoring host (kubeha:monitoring), its client certificate
# signed by the cluster CA (the key stays on the host), the rules and the scrape jobs; ends
# when every target answers or says why not:
#
#   salt-run state.orch orch.monitoring pillar='{"cluster": "lab"}'
#
# The control planes' side comes with their highstate (kubeha.monitoring). Everything
# happens in the kubeha_monitoring runner.
{%- set cluster = pillar.get('cluster') %}
{%- if not cluster %}
{{- raise('orch.monitoring: say which cluster: salt-run state.orch orch.monitoring pillar=\'{"cluster": "<name>"}\'') }}
{%- endif %}

{{ ("kubeha-monitoring-" ~ cluster) | tojson }}:
  salt.runner:
    - name: kubeha_monitoring.setup
    - cluster: {{ cluster | tojson }}
