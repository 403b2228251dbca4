{#- salt/beacon/<minion>/kubeha_certs/expiring -> orch.certs_renew for the beacon's cluster.
    Renders on the master without pillar or grains (docs/facts.md #16): the cluster name is
    taken from the event only when it is a DNS label, and the orchestration's runner asks
    every control plane again, renews one at a time, never beside another renewal of the
    cluster and not within certs:cooldown_hours of the last one (reason: beacon). A CA that
    expires has its own tag (ca-expiring), which no reactor acts on.
    Salt 3008 fires a beacon's fields at the top of `data`; older releases under data.data. #}
{%- set payload = data.get('data') if data.get('data') is mapping else data %}
{%- set cluster = payload.get('cluster') %}
{%- if cluster is string and cluster | regex_match('^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)$') %}
kubeha-reactor-certs-renew:
  runner.state.orchestrate:
    - args:
      - mods: orch.certs_renew
      - pillar:
          cluster: {{ cluster | tojson }}
          reason: beacon
          trigger: {{ (data.get('id') or payload.get('id') or '') | string | tojson }}
{%- endif %}
