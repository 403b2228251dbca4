# Secrets live apart so they can be encrypted (Salt's gpg renderer:
# `#!yaml|gpg` with an armored block) or sourced from Vault. Replace this value:
# keepalived's PASS authentication takes at most 8 characters.
kubeha:
  vrrp:
    auth_pass: ChangeMe
