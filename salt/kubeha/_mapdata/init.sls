# -*- coding: utf-8 -*-
# vim: ft=sls
# The merged, validated, derived map for this node (template-formula's _mapdata idea):
#   salt cp-1 state.apply kubeha._mapdata
# Secrets are masked. Changes nothing.
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as kubeha with context %}
{%- set shown = salt['slsutil.merge'](kubeha, {'vrrp': {'auth_pass': '<masked>' if kubeha.vrrp.auth_pass else ''}}) %}

kubeha-mapdata-shown:
  test.show_notification:
    - text: |
        {{ shown | yaml(False) | indent(8) }}
