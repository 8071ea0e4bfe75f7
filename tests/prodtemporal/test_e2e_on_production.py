"""The e2e tests that lean hardest on Temporal's durability, again on the production-shaped
server: partitions and dependsOn (timers, signals, child workflows over 4 history shards),
the worker SIGKILL mid rollout (task retries and heartbeats through PostgreSQL), and image
scan schedules (Temporal Schedules, their updates and their pause, on the server's own
scheduler), and the three-hosts test (worker, CLI and content store on separate hosts, sharing
only Temporal, the management cluster and the registry)."""

from tests.distributed.test_three_hosts import (
    second_cluster,
    test_three_hosts_share_nothing_but_the_three_services,
    world,
)
from tests.e2e.conftest import prefix
from tests.e2e.test_rollout import (
    test_depends_on_chain_lands_in_order_and_waits_durably,
    test_partitions_roll_out_in_order_with_at_most_one_unavailable,
)
from tests.e2e.test_worker_restart import (
    test_sigkill_mid_rollout_then_restart_ends_ready_without_extra_revisions,
)
from tests.images.test_gitrepo_schedules import (
    test_new_tag_reaches_the_cluster_and_schedules_follow_pause_and_delete,
)

__all__ = [
    "prefix",
    "second_cluster",
    "test_depends_on_chain_lands_in_order_and_waits_durably",
    "test_new_tag_reaches_the_cluster_and_schedules_follow_pause_and_delete",
    "test_partitions_roll_out_in_order_with_at_most_one_unavailable",
    "test_sigkill_mid_rollout_then_restart_ends_ready_without_extra_revisions",
    "test_three_hosts_share_nothing_but_the_three_services",
    "world",
]
