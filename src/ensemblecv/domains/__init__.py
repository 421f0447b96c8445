"""Domain generalisation: the leave-one-domain-out protocol and its DomainBed-style table.

Domain generalisation is classification with another fold protocol, so it reuses the
whole road: each held-out domain gets a normal workspace under
``WORKSPACE/domains/<held_out>/`` (training domains in its fold table, the held-out
domain as its labelled test set), and every existing verb works on it unchanged.
See docs/domains.md.
"""

from .layout import is_lodo_workspace, protocol_domains, sub_workspaces
from .protocol import build_lodo_ensembles, held_out_config, lodo_domains, train_lodo
from .table import domain_table, print_domain_table, seed_summary, write_domain_table

__all__ = [
    "build_lodo_ensembles",
    "domain_table",
    "held_out_config",
    "is_lodo_workspace",
    "lodo_domains",
    "print_domain_table",
    "protocol_domains",
    "seed_summary",
    "sub_workspaces",
    "train_lodo",
    "write_domain_table",
]
