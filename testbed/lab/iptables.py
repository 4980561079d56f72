"""The one iptables every lab uses, in every node of every backend: the host's ``iptables-nft``.

nf_tables is what Debian's ``iptables`` points to and what the node image's Debian would pick too; the
legacy x_tables backend may be missing from a custom kernel, and rules of the two backends in one
namespace are invisible to each other's ``-save`` (and their order is undefined). Naming the variant
keeps a host whose alternatives point to legacy from splitting a lab's rules over two backends.
"""

from __future__ import annotations

from collections.abc import Sequence

BACKEND = "nft"
IPTABLES = f"iptables-{BACKEND}"
IPTABLES_SAVE = f"iptables-{BACKEND}-save"
IPTABLES_RESTORE = f"iptables-{BACKEND}-restore"
_PINNED = {"iptables": IPTABLES, "iptables-save": IPTABLES_SAVE, "iptables-restore": IPTABLES_RESTORE}


def pinned(argv: Sequence[str]) -> list[str]:
    """``argv`` with a generic iptables command name replaced by the pinned variant."""
    command = list(argv)
    if command and command[0] in _PINNED:
        command[0] = _PINNED[command[0]]
    return command
