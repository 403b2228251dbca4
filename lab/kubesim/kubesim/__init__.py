"""The runtime package shipped inside the kubesim .debs (imported as `kubesim` on a machine).

Every module here uses only the standard library, PyYAML and cryptography, as Debian 12's
python3-yaml / python3-cryptography ship them (cryptography 38), so the programs run on
/usr/bin/python3 of a stock Debian 12 machine.
"""
