"""
Whether this host has an address, read from the kernel's ``/proc/net/fib_trie`` without
forking ``ip``: the VIP readers of ``vip_probe`` (the beacon, the runner's moves) and
``chaos_watch`` (the chaos probe's VIP timeline).

Loaded as ``__utils__["kubeha_fib.local_address"]``.
"""

import re

# fib_trie prints one section per routing table: "Main:", "Local:" (the kernel keeps the
# two merged in one trie until a policy rule exists, so a node's addresses may sit under
# either) and "Id <n>:" for any other table. Another table's "local" route is not an
# address of the host: kubeha-vip-divert's `local <VIP>/32 table 4843` must not read as
# holding the VIP (net/ipv4/fib_trie.c, fib_table_print).
SECTION = re.compile(r"^(Main|Local|Id \d+):$")


def local_address(address: str, fib_trie: str) -> bool:
    """Whether ``fib_trie`` lists ``address`` as a local (host) address of the main or
    local table: a ``|-- <address>`` leaf followed by ``/32 host LOCAL``."""
    lines = fib_trie.splitlines()
    table = "Main"
    for i, line in enumerate(lines):
        if section := SECTION.match(line.strip()):
            table = section.group(1)
            continue
        if table in ("Main", "Local") and line.strip() == f"|-- {address}":
            for below in lines[i + 1 : i + 4]:
                if "/32 host LOCAL" in below:
                    return True
                if "|--" in below:
                    break
    return False
