{#- salt/beacon/<minion>/kubeha_vip/{first,change} -> the kubeha_vip runner, which keeps the
    report, decides from the latest report of every control plane and acts (one decision
    at a time per cluster, a cooldown between moves, every decision recorded:
    `salt-run kubeha_vip.history <cluster>`). Renders on the master without pillar or grains
    (docs/facts.md #16): the cluster is taken from the event only when it is a DNS label, the
    reporting minion from the tag; the runner refuses a report about another node than the
    one that sent it. Salt 3008 fires a beacon's fields at the top of `data`; older releases
    under data.data. #}
{%- set payload = data.get('data') if data.get('data') is mapping else data %}
{%- set cluster = payload.get('cluster') %}
{%- set minion = tag.split('/')[2] if tag.count('/') >= 3 else '' %}
{%- if cluster is string and cluster | regex_match('^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)$') %}
kubeha-reactor-vip:
  runner.kubeha_vip.react:
    - args:
      - cluster: {{ cluster | tojson }}
      - minion: {{ minion | tojson }}
      - event: {{ payload | tojson }}
{%- endif %}
