"""A release's desired objects next to the live ones: readiness polls, drift, correction.

The deploy activities open one per check or readiness wait; the judgement itself (readiness,
drift) is the pure core's (``flotilla.readiness``, ``flotilla.drift``).
"""

from __future__ import annotations

import time
from typing import Any

from activities.deploy_models import DeploymentStatus, StatusRequest
from activities.helm import HELM_MANAGER, applied_revision, read_history, with_helm_ownership
from activities.kube import Kube, watch_everywhere
from flotilla.deployment import deployment_label
from flotilla.drift import (
    CompiledComparePatch,
    DriftEntry,
    ObjectKey,
    diff_objects,
    find_hpa_targets,
    object_key,
)
from flotilla.models import BundleDeploymentOptions
from flotilla.readiness import (
    IgnoreCondition,
    Readiness,
    assess,
    ready_when_present,
    summarize_not_ready,
)

MAX_LISTED = 10

# Between two looks a wait watches the first object that was not Ready for at most this long
# (it ends the moment that one is), so a cancellation is seen and the rest are re-read at
# least this often.
WATCH_SECONDS = 5.0
# A readiness wait polls quickly at first (most releases turn Ready within a second or two of
# their apply), then every second for a while, then backs off: a poll re-reads only what was
# not Ready at the last one (a GET or two). The watching wait (``watch_waiting``) uses these
# only where it cannot watch.
FIRST_POLLS_SECONDS = (0.25, 0.25, 0.5)
STEADY_POLL_SECONDS = 1.0
STEADY_POLL_FOR_SECONDS = 15.0
MAX_POLL_SECONDS = 5.0


def describe_key(key: ObjectKey) -> str:
    return "/".join(part for part in (key.kind, key.namespace, key.name) if part)


class ReleaseWatch:
    """The desired objects of one release and the means to compare them with the live ones."""

    def __init__(
        self,
        kube: Kube,
        request: StatusRequest,
        options: BundleDeploymentOptions,
        desired: list[dict[str, Any]],
    ) -> None:
        self.kube = kube
        self.request = request
        self.options = options
        self.desired = desired
        self.namespace = request.release.namespace
        self.ignore = [
            IgnoreCondition(entry)
            for entry in (options.ignore.conditions if options.ignore else None) or []
        ]
        self.patches = [
            CompiledComparePatch.model_validate(
                patch.model_dump(mode="json", by_alias=True, exclude_none=True)
            )
            for patch in (options.diff.compare_patches if options.diff else None) or []
        ]
        self.hpa_targets = find_hpa_targets(desired)
        self.drift: list[DriftEntry] = []
        # While waiting: the objects not Ready at the last poll (None: not polled yet), and
        # the resourceVersion each was read at (where a watch of it starts).
        self._waiting: list[ObjectKey] | None = None
        self._versions: dict[ObjectKey, str] = {}

    def _live(self) -> dict[ObjectKey, dict[str, Any] | None]:
        live: dict[ObjectKey, dict[str, Any] | None] = {}
        for obj in self.desired:
            key = object_key(obj, self.namespace)
            live[key] = self.kube.get(key.api_version, key.kind, key.namespace, key.name)
        return live

    def poll_ready(self) -> list[str]:
        """Not-ready lines for a readiness wait, reading only what was not Ready last time.

        A wait polls many times and most objects are Ready at once, so later polls read just
        the few that were not, and kinds without a status (ConfigMaps, Secrets, RBAC) are not
        read at all; ``observe`` makes the full check once they are. A missing object is
        drift for ``observe``, not a reason to wait.
        """
        keys = self._waiting
        if keys is None:
            keys = [
                key
                for key in (object_key(obj, self.namespace) for obj in self.desired)
                if not ready_when_present(key.api_version, key.kind)
            ]
        waiting: list[ObjectKey] = []
        judged: list[tuple[dict[str, Any], Readiness]] = []
        for key in keys:
            obj = self.kube.get(key.api_version, key.kind, key.namespace, key.name)
            if obj is None:
                continue
            readiness = assess(obj, self.ignore)
            if not readiness.ready:
                waiting.append(key)
                judged.append((obj, readiness))
                self._versions[key] = str((obj.get("metadata") or {}).get("resourceVersion", ""))
        self._waiting = waiting
        return summarize_not_ready(judged)

    def watch_waiting(self, seconds: int) -> bool:
        """Return as soon as the first object that was not Ready at the last poll is Ready
        (or gone), or after ``seconds``: a watch of that one object, so no poll interval adds
        to the wait (helm's ``--wait`` watches too). The next poll reads what is still not
        Ready. False when nothing is waiting (not polled yet, or all Ready at the last
        poll). KubeError when the cluster will not watch it (say, an account allowed to get
        but not to watch); the caller then waits out a poll interval instead.
        """
        if not self._waiting:
            return False
        key = self._waiting[0]
        info = self.kube.resource_info(key.api_version, key.kind)
        events = watch_everywhere(
            self.kube,
            info,
            resource_version=self._versions.get(key, ""),
            label_selector="",
            field_selector=f"metadata.name={key.name}",
            timeout_seconds=max(1, seconds),
            namespace=key.namespace if info.namespaced else "",
        )
        for event, obj in events:
            if event == "DELETED" or (event != "BOOKMARK" and assess(obj, self.ignore).ready):
                events.close()
                break
        return True

    def forget_ready(self) -> None:
        """Poll every object again (after the full check found one no longer Ready)."""
        self._waiting = None

    def observe(self) -> DeploymentStatus:
        """The full check: the applied revision, readiness of every object and drift."""
        history = read_history(self.kube, self.request.release.name, self.namespace)
        applied = applied_revision(history)
        if applied is None:
            release = self.request.release
            return DeploymentStatus(
                release=release.model_copy(update={"revision": 0}),
                drift=[f"release {release.namespace}/{release.name}: no deployed revision"],
                record_missing=True,
            )
        live = self._live()
        judged: list[tuple[dict[str, Any], Readiness]] = [
            (obj, assess(obj, self.ignore)) for obj in live.values() if obj is not None
        ]
        non_ready = summarize_not_ready(judged)
        self.drift = diff_objects(
            self.desired, live, self.patches, self.hpa_targets, namespace=self.namespace
        )
        # Labels hold a digest of ids that are not valid label values; give back the real id.
        applied_id = applied.deployment_id
        if applied_id == deployment_label(self.request.deployment_id):
            applied_id = self.request.deployment_id
        return DeploymentStatus(
            release=self.request.release.model_copy(update={"revision": applied.revision}),
            applied_deployment_id=applied_id,
            ready=not non_ready,
            non_ready=non_ready,
            drift=[f"{describe_key(e.key)}: {e.message}" for e in self.drift][:MAX_LISTED],
        )

    def correct(self, *, force: bool) -> None:
        """Re-apply the desired state of each drifted object: apply, or replace when forced."""
        by_key = {object_key(obj, self.namespace): obj for obj in self.desired}
        for entry in self.drift:
            obj = with_helm_ownership(by_key[entry.key], self.request.release)
            if force:
                self.kube.replace(obj, namespace=self.namespace)
            else:
                # As Helm's own field manager: Helm 4 applies server-side, and fields taken
                # by another manager would make the next upgrade that changes them conflict.
                self.kube.apply(obj, namespace=self.namespace, force=True, manager=HELM_MANAGER)


class PollSchedule:
    """When a readiness wait looks next: quickly at first, then every second, then backing
    off; never past its deadline."""

    def __init__(self, timeout_seconds: float) -> None:
        self.started = time.monotonic()
        self.deadline = self.started + timeout_seconds
        self.looks = 0
        self._delay = 0.0

    @property
    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def looked(self) -> None:
        self.looks += 1

    def next_poll(self) -> float:
        """Seconds to the next look."""
        if self.looks <= len(FIRST_POLLS_SECONDS):
            self._delay = FIRST_POLLS_SECONDS[max(0, self.looks - 1)]
        elif time.monotonic() - self.started < STEADY_POLL_FOR_SECONDS:
            self._delay = STEADY_POLL_SECONDS
        else:
            self._delay = min(max(self._delay, STEADY_POLL_SECONDS) * 1.5, MAX_POLL_SECONDS)
        return min(self._delay, self.remaining)


class ReadinessWait:
    """One readiness wait, a look at a time: ``step`` until it answers a status.

    The waiting between looks is the caller's: a thread may watch (``ReleaseWatch.
    watch_waiting``) or sleep, an event loop may sleep without holding a thread
    (``activities.pushqueue``). ``applied`` says the objects came from the manifest Helm has
    just applied: Ready then needs no full check (no drift can be due yet; the drift monitor
    looks later).
    """

    def __init__(self, watch: ReleaseWatch, timeout_seconds: float, *, applied: bool) -> None:
        self.watch = watch
        self.applied = applied
        self.schedule = PollSchedule(timeout_seconds)
        self.not_ready: list[str] = []

    @property
    def remaining(self) -> float:
        return self.schedule.remaining

    def step(self) -> DeploymentStatus | None:
        """Look once: the status when the wait is over (all Ready, or the time is up), None
        while something is still not Ready."""
        self.schedule.looked()
        self.not_ready = self.watch.poll_ready()
        request = self.watch.request
        if not self.not_ready and self.applied:
            return DeploymentStatus(
                release=request.release,
                applied_deployment_id=request.deployment_id,
                ready=True,
            )
        out_of_time = self.schedule.remaining <= 0
        if not self.not_ready or out_of_time:
            status = self.watch.observe()
            if status.ready or out_of_time:
                return status
            self.watch.forget_ready()  # something turned NotReady again: watch it all
        return None

    def next_poll(self) -> float:
        """Seconds to the next look (never past the deadline)."""
        return self.schedule.next_poll()
