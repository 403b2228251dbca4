# -*- coding: utf-8 -*-
# vim: ft=sls
# The self-healing VIP on this control plane (kubeha:vip_heal; README "Self-healing VIP").
# - The directory of keepalived's tracked files (keepalived_track), kept by tmpfiles.d:
#   keepalived drops a tracked file whose directory is missing when it starts, and /run is
#   empty at boot. It exists before keepalived (re)reads its config.
# - The kubeha_vip beacon, which reports what this node sees to the master's kubeha_vip
#   runner (salt/reactor/vip.sls). It keeps watching during state runs
#   (disable_during_state_run: false): nothing it triggers runs a state (that setting only
#   guards state runs, Salt issue 50002), its events carry states and never the overrides
#   the runner writes (Salt issues 23685, 62711), and a highstate that reloads keepalived
#   or HAProxy is exactly when the VIP may flap.
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as kubeha with context %}
{%- set heal = kubeha.vip_heal %}
{%- set d = kubeha.derived %}
{%- set peers = {} %}
{%- for node in kubeha.control_plane if node.name != d.node.name %}
{%-   do peers.update({node.name: node.ip}) %}
{%- endfor %}

include:
  - {{ tplroot }}.lb.keepalived.service

kubeha-lb-keepalived-heal-tmpfiles-managed:
  file.managed:
    - name: /etc/tmpfiles.d/kubeha-keepalived.conf
    - user: root
    - group: root
    - mode: '0644'
    - contents: |
        # Managed by Salt (kubeha): keepalived's tracked files and the notify hook's state.
        d /run/kubeha/keepalived 0755 root root -

kubeha-lb-keepalived-heal-track-dir:
  file.directory:
    - name: /run/kubeha/keepalived
    - user: root
    - group: root
    - mode: '0755'
    - makedirs: True
    - require_in:
      - service: kubeha-lb-keepalived-service-running
{%- if heal.mode != 'off' %}

kubeha-lb-keepalived-heal-beacons-synced:
  saltutil.sync_beacons:
    - refresh: True

kubeha-lb-keepalived-heal-beacon-present:
  beacon.present:
    - name: kubeha_vip
    - save: True
    - cluster: {{ kubeha.cluster.name | tojson }}
    - node: {{ d.node.name | tojson }}
    - vip: {{ kubeha.vip.address | tojson }}
    - peers: {{ peers | tojson }}
    - vrid: {{ kubeha.vrrp.router_id | tojson }}
    - instance: {{ kubeha.vrrp.instance | tojson }}
    - lb_port: {{ kubeha.vip.lb_port | tojson }}
    - apiserver_port: {{ kubeha.apiserver.port | tojson }}
    - advert_int: {{ kubeha.vrrp.advert_int | tojson }}
    - down_timer_adverts: {{ kubeha.vrrp.down_timer_adverts | tojson }}
{%-   for key in ['probes', 'probe_timeout', 'http_timeout', 'rtt_bad_ms', 'rtt_good_ms',
                  'loss_bad_pct', 'loss_good_pct', 'window', 'fall', 'rise', 'interval'] %}
    - {{ key }}: {{ heal[key] | tojson }}
{%-   endfor %}
{%-   if heal.get('move_etcd_leader') %}
    # read by vip_heal:move_etcd_leader only: whether this node's etcd member leads
    - etcd_metrics: {{ kubeha.defrag.metrics_url | tojson }}
{%-   endif %}
    - disable_during_state_run: False
    - require:
      - saltutil: kubeha-lb-keepalived-heal-beacons-synced
      - file: kubeha-lb-keepalived-heal-track-dir
{%- else %}

kubeha-lb-keepalived-heal-beacon-absent:
  beacon.absent:
    - name: kubeha_vip
    - save: True
{%- endif %}
