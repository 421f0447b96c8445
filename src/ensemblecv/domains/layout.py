"""Where a leave-one-domain-out workspace keeps things: ``protocol.json`` names the domains,
``domains/<held_out>/`` is each held-out domain's ordinary workspace. Read by the protocol,
the domain table and the report alike, so it imports nothing of theirs."""

from __future__ import annotations

import json
from pathlib import Path

PROTOCOL_FILE = "protocol.json"


def is_lodo_workspace(root: str | Path) -> bool:
    return (Path(root) / PROTOCOL_FILE).is_file()


def protocol_domains(root: str | Path) -> list[str]:
    """The domains of a protocol workspace, in order (every one is held out once)."""
    return list(json.loads((Path(root) / PROTOCOL_FILE).read_text(encoding="utf-8"))["domains"])


def sub_workspaces(root: str | Path) -> dict[str, Path]:
    """Held-out domain → its sub-workspace folder (those that exist), in the protocol's order."""
    root = Path(root)
    return {
        d: root / "domains" / d for d in protocol_domains(root) if (root / "domains" / d).is_dir()
    }
