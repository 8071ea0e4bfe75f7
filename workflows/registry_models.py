"""The messages and state of ``workflows/registry.py``, in a module of their own.

The workflow sandbox re-runs a workflow's module for every new workflow run, and building
pydantic models is most of that cost; this module is imported once, passed through.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from flotilla.agents import NEVER_CONNECTED
from flotilla.models import ClusterGroup, GitRepoRestriction, Policy, Restriction, Schedule
from flotilla.notifications import NotificationEvent
from flotilla.snapshots import ClusterSnapshot, ClusterView
from flotilla.status import since_text

# The snapshot models moved to the core (the snapshot activities read them too); workflows
# still import them from here.
__all__ = ["ClusterSnapshot", "ClusterView"]

# What clients call the registry workflow and its messages; workflows/registry.py registers
# them under these names.
REGISTRY_WORKFLOW = "ClusterRegistryWorkflow"
APPLY_CLUSTER_UPDATE = "apply_cluster"
LABEL_CLUSTER_UPDATE = "label_cluster"
REMOVE_CLUSTER_UPDATE = "remove_cluster"
MOVE_CLUSTER_UPDATE = "move_cluster"
ADOPT_CLUSTER_SIGNAL = "adopt_cluster"
MOVE_REFUSED_SIGNAL = "move_refused"
APPLY_GROUP_UPDATE = "apply_group"
REMOVE_GROUP_UPDATE = "remove_group"
APPLY_RESTRICTION_UPDATE = "apply_restriction"
REMOVE_RESTRICTION_UPDATE = "remove_restriction"
APPLY_SCHEDULE_UPDATE = "apply_schedule"
REMOVE_SCHEDULE_UPDATE = "remove_schedule"
SNAPSHOT_QUERY = "snapshot"
AGENT_HEARTBEAT_SIGNAL = "agent_heartbeat"
REGISTER_AGENT_UPDATE = "register_agent"
CREATE_TOKEN_UPDATE = "create_token"  # noqa: S105 - a message name
DELETE_TOKEN_UPDATE = "delete_token"  # noqa: S105 - a message name
TOKENS_QUERY = "tokens"
NOTIFICATIONS_CONFIGURED_UPDATE = "notifications_configured"


def _unset(value: object) -> bool:
    return not value


class ClusterRecord(BaseModel):
    """A registered cluster: what targeting needs, plus where its credentials are.

    Fields at their default are left out of the JSON: the registry's state holds one record
    per cluster and is handed whole to continue-as-new, which at 10,000 clusters took 3.2 MB
    with every field written (over Temporal's 2 MB) and takes about 1 MB without."""

    name: str
    labels: dict[str, str] = Field(default_factory=dict)
    paused: bool = Field(default=False, exclude_if=_unset)
    kubeconfig_secret: str = Field(default="", exclude_if=_unset)
    # Agent mode: the cluster's own agent serves its queue; the central worker does not.
    agent: bool = Field(default=False, exclude_if=_unset)
    template_values: dict[str, str] = Field(default_factory=dict, exclude_if=_unset)
    last_seen: datetime | None = Field(default=None, exclude_if=_unset)
    # Set while the worker's probes of its API server fail: since when, and why (one line).
    unreachable_since: datetime | None = Field(default=None, exclude_if=_unset)
    unreachable: str = Field(default="", exclude_if=_unset)
    # When the cluster first answered, or answered again after being unreachable: the time of
    # its Reachable=True condition.
    reachable_since: datetime | None = Field(default=None, exclude_if=_unset)
    # Agent mode: what its heartbeat says, how often it beats, and the registration token
    # (by name) it registered with.
    agent_version: str = Field(default="", exclude_if=_unset)
    kubernetes_version: str = Field(default="", exclude_if=_unset)
    heartbeat_seconds: float = Field(default=0.0, exclude_if=_unset)
    registered_with: str = Field(default="", exclude_if=_unset)

    @property
    def offline(self) -> str:
        """The line a deployment on this cluster shows while it does not answer, else "". An
        agent cluster whose agent never beat is Offline from its registration."""
        if not self.unreachable:
            return NEVER_CONNECTED if self.agent and self.last_seen is None else ""
        return f"cluster unreachable since {since_text(self.unreachable_since)}: {self.unreachable}"


class TokenRecord(BaseModel):
    """A registration token, by the hash of its text (the text itself is never here)."""

    name: str
    hash: str
    created_at: datetime
    expires_at: datetime | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    # The cluster it registers (empty: any new cluster) and how many clusters it may
    # register (0: no limit); the clusters it registered.
    cluster: str = ""
    max_uses: int = 0
    used_by: list[str] = Field(default_factory=list)
    deleted: bool = False


class RegistryState(BaseModel):
    """All of the registry, handed whole to continue-as-new."""

    namespace: str
    version: int = 0
    clusters: dict[str, ClusterRecord] = Field(default_factory=dict)
    groups: dict[str, ClusterGroup] = Field(default_factory=dict)
    policies: dict[str, Policy] = Field(default_factory=dict)
    restrictions: dict[str, GitRepoRestriction] = Field(default_factory=dict)
    schedules: dict[str, Schedule] = Field(default_factory=dict)
    subscribers: list[str] = Field(default_factory=list)
    # Registration tokens by name.
    tokens: dict[str, TokenRecord] = Field(default_factory=dict)
    # A Provider or an Alert was applied in this namespace (``notifications/<ns>`` runs).
    notifications: bool = False
    # Cluster events for ``notifications/<ns>``, kept until the loop signals them.
    notify_events: list[NotificationEvent] = Field(default_factory=list)
    # Test switch: continue-as-new after this many events instead of when Temporal suggests.
    max_history_events: int | None = None
    # Test switch: snapshots whose JSON is larger travel by digest (None:
    # flotilla.snapshots.INLINE_SNAPSHOT_LIMIT). Left out of the JSON when unset.
    inline_snapshot_limit: int | None = Field(default=None, exclude_if=lambda value: value is None)


class ApplyClusterRequest(BaseModel):
    """Add a cluster or replace its labels, pause flag and credentials reference."""

    name: str
    labels: dict[str, str] = Field(default_factory=dict)
    paused: bool = False
    kubeconfig_secret: str = ""
    agent: bool = False
    template_values: dict[str, str] = Field(default_factory=dict)


class LabelClusterRequest(BaseModel):
    """Set and remove labels of a registered cluster."""

    name: str
    set_labels: dict[str, str] = Field(default_factory=dict)
    remove_labels: list[str] = Field(default_factory=list)


class RemoveClusterRequest(BaseModel):
    name: str


class MoveClusterRequest(BaseModel):
    """Re-home a cluster to the workspace ``to`` (whose registry must be running)."""

    name: str
    to: str


class AdoptClusterRequest(BaseModel):
    """A cluster handed over by the registry of ``moved_from`` (its labels and credentials
    reference; the kubeconfig Secret was copied to this workspace before)."""

    cluster: ApplyClusterRequest
    moved_from: str


class MoveRefused(BaseModel):
    """The registry of ``to`` kept its own cluster of the same name: the handed-over cluster
    goes back to the registry that moved it, which takes it again."""

    cluster: ApplyClusterRequest
    to: str


class ApplyGroupRequest(BaseModel):
    group: ClusterGroup


class RemoveGroupRequest(BaseModel):
    name: str


class ApplyRestrictionRequest(BaseModel):
    """Add or replace a Policy or a GitRepoRestriction of the workspace."""

    restriction: Restriction = Field(discriminator="kind")


class RemoveRestrictionRequest(BaseModel):
    kind: str
    name: str


class ApplyScheduleRequest(BaseModel):
    """Add or replace a Schedule (deployment windows) of the workspace."""

    schedule: Schedule


class RemoveScheduleRequest(BaseModel):
    name: str


class RegistryChange(BaseModel):
    """The result of every update: the registry version that now includes it."""

    version: int
    message: str


class NotificationsConfiguredRequest(BaseModel):
    """Sent by ``apply -f`` of a Provider or an Alert: the namespace has notifications."""


class SubscribeRequest(BaseModel):
    workflow_id: str


class ClustersSeen(BaseModel):
    """Clusters a worker reached, and when (its clock): the registry's last-seen times; and
    those it probed and could not reach, with why (one line) and when."""

    seen: dict[str, datetime]
    unreachable: dict[str, str] = Field(default_factory=dict)
    probed_at: datetime | None = None


class SnapshotRequest(BaseModel):
    """Query input; a model so fields can be added later without breaking callers."""


class RegistrySnapshot(BaseModel):
    """The full registry for the CLI and the worker (secret names, never secret values)."""

    namespace: str
    version: int
    clusters: list[ClusterRecord]
    groups: list[ClusterGroup]
    subscribers: list[str]
    policies: list[Policy] = Field(default_factory=list)
    restrictions: list[GitRepoRestriction] = Field(default_factory=list)
    notifications: bool = False
    schedules: list[Schedule] = Field(default_factory=list)


class AgentHeartbeat(BaseModel):
    """An agent's beat: it serves its cluster's queue and reaches its API server. The
    registry takes its own clock for last-seen (an agent's clock may be wrong)."""

    name: str
    agent_version: str = ""
    kubernetes_version: str = ""
    interval_seconds: float
    # The cluster's API server did not answer (one line): the agent lives, the cluster not.
    problem: str = ""
    # Sent once by an agent that shuts down: Offline at once, no need to wait.
    stopping: bool = False


class CreateTokenRequest(BaseModel):
    name: str
    hash: str
    ttl_seconds: float | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    cluster: str = ""
    max_uses: int = 0


class DeleteTokenRequest(BaseModel):
    name: str


class RegisterAgentRequest(BaseModel):
    """An agent asks to serve ``name``, proving it holds a token by its hash."""

    name: str
    token_hash: str
    labels: dict[str, str] = Field(default_factory=dict)


class TokensRequest(BaseModel):
    """Query input of ``tokens``."""


class TokenInfo(BaseModel):
    """A token as ``cluster token list`` shows it (no hash)."""

    name: str
    created_at: datetime
    expires_at: datetime | None
    labels: dict[str, str]
    cluster: str
    max_uses: int
    used_by: list[str]
