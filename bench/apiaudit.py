"""Who asked a local cluster's API server what: its audit log, read by client and time window."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from pathlib import Path


def client_of(agent: str) -> str:
    """helm, flotilla (its Python client) or "" for the cluster's own controllers and kwok."""
    lowered = agent.lower()
    if lowered.startswith("helm"):
        return "helm"
    if lowered.startswith("openapi-generator") or "python" in lowered:
        return "flotilla"
    return ""


def requests_in(audit_log: Path, start: float, end: float) -> Counter[str]:
    """Requests of helm and flotilla received between ``start`` and ``end`` (epoch seconds),
    by ``"<client>: <verb> <resource>"``."""
    found: Counter[str] = Counter()
    if not audit_log.exists():
        return found
    for line in audit_log.read_text().splitlines():
        event = json.loads(line)
        who = client_of(str(event.get("userAgent", "")))
        if not who:
            continue
        at = datetime.fromisoformat(event["requestReceivedTimestamp"]).timestamp()
        if start <= at <= end:
            resource = (event.get("objectRef") or {}).get("resource", "")
            found[f"{who}: {event['verb']} {resource}".rstrip()] += 1
    return found


def by_client(found: Counter[str]) -> Counter[str]:
    """The same requests counted by client only."""
    total: Counter[str] = Counter()
    for what, count in found.items():
        total[what.split(":", 1)[0]] += count
    return total
