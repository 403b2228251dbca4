{#- salt/beacon/<minion>/kubeha_etcd_frag/fragmented -> orch.etcd_defrag for the beacon's
    cluster. Renders without pillar or grains (docs/facts.md #16): the runner refuses an
    unhealthy cluster, runs one defrag per cluster at a time and none within
    defrag:cooldown of the last (reason: beacon), so the three control planes' beacons
    start one defrag, not three. #}
{%- set payload = data.get('data') if data.get('data') is mapping else data %}
{%- set cluster = payload.get('cluster') %}
{%- if cluster is string and cluster | regex_match('^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)$') %}
kubeha-reactor-etcd-defrag:
  runner.state.orchestrate:
    - args:
      - mods: orch.etcd_defrag
      - pillar:
          cluster: {{ cluster | tojson }}
          reason: beacon
          trigger: {{ (data.get('id') or payload.get('id') or '') | string | tojson }}
{%- endif %}
