"""A bundle's per-cluster states packed against its GitRepo's cluster list, so reports stay small.

A bundle on 500 clusters used to send its GitRepo one ``{cluster: state}`` entry per cluster
(~12 KB a report, 625 KB of GitRepo state at 50 bundles). Both sides hold the same registry
snapshot, so the names need not travel: ``pack_report`` writes one letter per cluster of the
sorted list (``.`` where the bundle has no deployment), run-length encoded (``a497ba2``: 497
clusters in the first of its states by name, one in its second, two more in its first) or,
when shorter, as one base64 number (``_encode``), with a digest of the list. A GitRepo
whose list has the same digest reads the states back exactly (``expand_report``); one whose
list differs (a cluster came or went and the bundle has not been told yet) knows only the
report's counts until the bundle's next report, which its refresh brings at once.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from pydantic import BaseModel

from flotilla.status import BundleReport, BundleState, ClusterTally, count_states, tally_report

# Legend letters: more than the states there are, so new states merge without a format change.
_LETTERS = string.ascii_lowercase + string.ascii_uppercase
_ABSENT = "."


@dataclass(frozen=True)
class ClusterIndex:
    """The sorted cluster names of a snapshot and their digest."""

    names: tuple[str, ...]
    key: str
    position: Mapping[str, int] = field(compare=False, repr=False)


def cluster_index(names: Iterable[str]) -> ClusterIndex:
    ordered = tuple(sorted(set(names)))
    key = hashlib.sha256("\n".join(ordered).encode()).hexdigest()[:16]
    return ClusterIndex(names=ordered, key=key, position={n: i for i, n in enumerate(ordered)})


class PackedFields(Protocol):
    """What carries per-cluster states packed: a report, a shard's report, a dependency's
    states for its dependents, the states a sharded bundle joined from its shards."""

    @property
    def clusters_key(self) -> str: ...

    @property
    def codes(self) -> str: ...

    @property
    def counts(self) -> Mapping[str, int]: ...

    @property
    def states(self) -> Mapping[str, BundleState]: ...


_Carrier = TypeVar("_Carrier", bound=BaseModel)


def with_packed(carrier: _Carrier, packed: PackedFields) -> _Carrier:
    """``carrier`` holding the packed states of ``packed`` (its key, codes, counts, and the
    states outside the list) in place of its own."""
    return carrier.model_copy(
        update={
            "clusters_key": packed.clusters_key,
            "codes": packed.codes,
            "counts": dict(packed.counts),
            "states": dict(packed.states),
        }
    )


def _encode(symbols: list[int], kinds: int) -> str:
    """The shorter of two spellings of one symbol per cluster (0: no deployment, else the
    legend's state ``symbol - 1``): runs, each a letter and its length (none for a run of
    one), for fleets that are mostly in one state; or, after ``~``, all symbols as one number
    in base ``kinds``, base64, for states that change from one cluster to the next (about
    half a byte a cluster at nine states, whatever their order)."""
    runs: list[str] = []
    previous, count = -1, 0
    for symbol in [*symbols, -1]:
        if symbol == previous:
            count += 1
            continue
        if count:
            letter = _LETTERS[previous - 1] if previous else _ABSENT
            runs.append(letter if count == 1 else f"{letter}{count}")
        previous, count = symbol, 1
    spelled = "".join(runs)
    number = 0
    for symbol in reversed(symbols):
        number = number * kinds + symbol
    dense = "~" + base64.b64encode(number.to_bytes((number.bit_length() + 7) // 8)).decode()
    return dense if len(dense) < len(spelled) else spelled


def _decode(codes: str, kinds: int, length: int) -> list[int]:
    if codes.startswith("~"):
        number = int.from_bytes(base64.b64decode(codes[1:]))
        symbols = []
        for _ in range(length):
            number, symbol = divmod(number, kinds)
            symbols.append(symbol)
        return symbols
    symbols = []
    i = 0
    while i < len(codes):
        letter, j = codes[i], i + 1
        while j < len(codes) and codes[j].isdigit():
            j += 1
        symbol = 0 if letter == _ABSENT else _LETTERS.index(letter) + 1
        symbols.extend([symbol] * int(codes[i + 1 : j] or 1))
        i = j
    return symbols


def pack_report(report: BundleReport, index: ClusterIndex) -> BundleReport:
    """``report`` with its unpacked states packed against ``index`` (deployments on clusters
    the index does not name stay unpacked) and its counts taken from them. The legend is the
    counts' states in order, so it need not travel."""
    if not report.states or report.clusters_key not in ("", index.key):
        return report
    states = dict(expand_report(report, index).states)
    counts = count_states(states.values())
    symbol = {state: i + 1 for i, state in enumerate(sorted(counts))}
    symbols = [0] * len(index.names)
    extra: dict[str, BundleState] = {}
    for name, state in states.items():
        at = index.position.get(name)
        if at is None:
            extra[name] = state
        else:
            symbols[at] = symbol[state]
    packed = len(extra) < len(states)
    return report.model_copy(
        update={
            "states": extra,
            "counts": counts,
            "clusters_key": index.key if packed else "",
            "codes": _encode(symbols, len(counts) + 1) if packed else "",
        }
    )


def expand_report(report: BundleReport, index: ClusterIndex | None) -> BundleReport:
    """``report`` with every per-cluster state it carries unpacked into ``states`` and the
    packed form dropped. States packed against another cluster list cannot be read: such a
    report comes back as it is, still packed (``readable`` says which)."""
    if not report.codes or index is None or not readable(report, index):
        return report
    legend = [BundleState(name) for name in sorted(report.counts)]
    states: dict[str, BundleState] = {}
    symbols = _decode(report.codes, len(legend) + 1, len(index.names))
    for name, symbol in zip(index.names, symbols, strict=False):
        if symbol:
            states[name] = legend[symbol - 1]
    states.update(report.states)
    return report.model_copy(update={"states": states, "clusters_key": "", "codes": ""})


def tally_packed(report: BundleReport, index: ClusterIndex) -> ClusterTally:
    """``tally_report`` of ``report`` read against ``index``, straight from its packed codes
    when it is packed against that list (no state per cluster is built: a GitRepo's status
    tallies every report it gets)."""
    if not report.codes or report.clusters_key != index.key:
        return tally_report(expand_report(report, index), position=index.position)
    legend = sorted(report.counts)
    length = len(index.names)
    symbols = bytes(_decode(report.codes, len(legend) + 1, length)[:length])
    # One digit per position, "1" where the bit is set, read as a base-2 number (lowest
    # position last): the masks without a loop over the clusters.
    symbol_range = bytes(range(len(legend) + 1))
    deployed = bytes.maketrans(symbol_range, b"0" + b"1" * len(legend))
    flags = "".join("0" if state == BundleState.READY else "1" for state in legend)
    not_ready = bytes.maketrans(symbol_range, b"0" + flags.encode())
    # The states it carries unpacked (clusters outside the list), tallied by name.
    unpacked = tally_report(report, position=index.position)
    return dataclasses.replace(
        unpacked,
        named=int(symbols.translate(deployed)[::-1] or b"0", 2) | unpacked.named,
        named_not_ready=int(symbols.translate(not_ready)[::-1] or b"0", 2)
        | unpacked.named_not_ready,
    )


def readable(report: BundleReport, index: ClusterIndex | None) -> bool:
    """Whether ``expand_report`` gives every per-cluster state of ``report``."""
    return not report.codes or (index is not None and report.clusters_key == index.key)


def read_report(
    report: BundleReport, index: ClusterIndex | None, previous: ClusterIndex | None
) -> BundleReport:
    """``report`` unpacked with the current cluster list, or with the ``previous`` one when it
    was packed against that (a bundle that reported before it was told of the change)."""
    if readable(report, index) or previous is None or not readable(report, previous):
        return expand_report(report, index)
    return expand_report(report, previous)


def repack(
    reports: Mapping[str, BundleReport], before: ClusterIndex, after: ClusterIndex
) -> dict[str, BundleReport]:
    """Reports packed against ``before`` (or not packed) packed against ``after`` (states on
    clusters that left the list stay, unpacked); those packed against another list are kept
    as they are."""
    return {
        name: pack_report(expand_report(report, before), after)
        if readable(report, before)
        else report
        for name, report in reports.items()
    }


def decode_states(codes: str, legend: Sequence[str], length: int) -> list[str | None]:
    """The state (by name) at each position of a packed list of ``length`` clusters whose
    symbols stand for ``legend`` (None: no deployment there)."""
    symbols = _decode(codes, len(legend) + 1, length) if length else []
    symbols = [*symbols[:length], *[0] * (length - len(symbols))]
    return [legend[s - 1] if s else None for s in symbols]


def encode_states(states: Sequence[str | None], legend: Sequence[str]) -> str:
    """``states`` (one per position, None: no deployment) packed with ``legend``'s symbols;
    ``decode_states`` reads them back."""
    symbol = {name: i + 1 for i, name in enumerate(legend)}
    return _encode([symbol[s] if s else 0 for s in states], len(legend) + 1) if states else ""


def join_packed(parts: Sequence[tuple[str, Sequence[str], int]], legend: Sequence[str]) -> str:
    """Consecutive ranges of one sorted cluster list, each ``(codes, its legend, length)``,
    packed as one list with ``legend`` (which must name every state the parts use): how a
    sharded bundle builds its report from its shards' (each shard owns one range)."""
    states: list[str | None] = []
    for codes, own, length in parts:
        states.extend(decode_states(codes, own, length))
    return encode_states(states, legend)


def split_packed(
    codes: str, legend: Sequence[str], lengths: Sequence[int]
) -> list[tuple[str, dict[str, int]]]:
    """A packed list cut into consecutive ranges of ``lengths``: each range's codes and its
    counts per state (whose sorted names are its legend): how a sharded bundle hands each
    shard the states of its clusters without any cluster's name."""
    states = decode_states(codes, legend, sum(lengths))
    out, start = [], 0
    for length in lengths:
        piece = states[start : start + length]
        start += length
        counts = count_states(s for s in piece if s)
        out.append((encode_states(piece, sorted(counts)), counts))
    return out


def states_by_position(report: BundleReport, key: str, length: int) -> dict[int, BundleState]:
    """The states ``report`` packs against a list known only by its ``key`` and ``length`` (a
    GitRepo whose snapshot came by digest has no names), by position in that list; empty
    when it is packed against another list. Reports packed against one list name the same
    cluster at the same position, which is all ``readyClusters`` needs."""
    if not report.codes or report.clusters_key != key:
        return {}
    decoded = decode_states(report.codes, sorted(report.counts), length)
    return {at: BundleState(state) for at, state in enumerate(decoded) if state is not None}
