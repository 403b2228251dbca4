# -*- coding: utf-8 -*-
# vim: ft=sls
# The merged, validated, derived map for this node (template-formula's _mapdata idea):
#   salt cp-1 state.apply kubeha._mapdata
# Secrets are redacted (map.jinja's mapdata is). Changes nothing.
{%- set tplroot = tpldir.split('/')[0] %}
{%- from tplroot ~ "/map.jinja" import mapdata as kubeha with context %}

kubeha-mapdata-shown:
  test.show_notification:
    - text: |
        {{ kubeha | yaml(False) | indent(8) }}
