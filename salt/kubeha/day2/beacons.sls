# -*- coding: utf-8 -*-
# vim: ft=sls
# The kubeha_certs and kubeha_etcd_frag beacons (_beacons/), configured from the model:
# thresholds from kubeha:certs and kubeha:defrag. Saved to the minion's beacons.conf, so
# they survive a restart. Both skip their check while a state run is in progress, and
# report a condition once (again only after `renotify`): the reactors they feed cannot loop
# (docs/facts.md #16).
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as kubeha with context %}
{%- if kubeha.derived.is_control_plane %}

kubeha-day2-beacons-modules-synced:
  saltutil.sync_beacons:
    - refresh: True

kubeha-day2-beacons-certs-present:
  beacon.present:
    - name: kubeha_certs
    - save: True
    - cluster: {{ kubeha.cluster.name | tojson }}
    - renew_before_days: {{ kubeha.certs.renew_before_days | tojson }}
    - renotify: 21600
    - interval: {{ kubeha.certs.check_interval | tojson }}
    - disable_during_state_run: True
    - require:
      - saltutil: kubeha-day2-beacons-modules-synced

kubeha-day2-beacons-etcd-frag-present:
  beacon.present:
    - name: kubeha_etcd_frag
    - save: True
    - cluster: {{ kubeha.cluster.name | tojson }}
    - fragmented_mb: {{ kubeha.defrag.fragmented_mb | tojson }}
    - metrics_url: {{ kubeha.defrag.metrics_url | tojson }}
    - renotify: {{ kubeha.defrag.cooldown | tojson }}
    - interval: {{ kubeha.defrag.check_interval | tojson }}
    - disable_during_state_run: True
    - require:
      - saltutil: kubeha-day2-beacons-modules-synced
{%- endif %}
