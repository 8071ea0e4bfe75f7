"""The GitOps activities: ask git for the head commit, read a commit's bundles into the content
store, plan a bundle's targets per cluster, and (signal-with-)start bundle workflows.

Each returns only names, digests, small flags and one-line errors, so workflow history stays
small whatever the repository holds. Git credentials are read from the secret store here and
handed to git through the environment, never through arguments, logs or results.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import git
from pydantic import BaseModel
from temporalio import activity
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError

from activities.checkout import read_checkout
from activities.commitsig import verify_commit
from activities.content import ContentError, ContentStore
from activities.downstream import read_resources
from activities.failures import to_application_error
from activities.gitops_models import (
    DOWNSTREAM_DIGEST,
    FETCH_BUNDLES,
    LS_REMOTE,
    PLAN_BUNDLE,
    SYNC_BUNDLES,
    SYNC_BUNDLES_SHARED,
    BundleRef,
    BundleStart,
    DependencyRef,
    DownstreamDigestRequest,
    DownstreamDigestResult,
    FetchRequest,
    FetchResult,
    GitSource,
    LsRemoteRequest,
    LsRemoteResult,
    PlannedTarget,
    PlanRequest,
    PlanResult,
    SyncBundlesRequest,
    SyncBundlesResult,
)
from activities.gitrun import run_git
from activities.liveness import heartbeating
from activities.secrets import SecretNotFoundError, SecretStore
from flotilla.bundles import Bundle, name_bundle, read_bundles
from flotilla.depends import BundleInfo, find_cycles, resolve_dependencies
from flotilla.deployment import DeploymentOptions, deployment_id
from flotilla.downstream import DownstreamCopy, resources_digest, unreadable_digest
from flotilla.errors import (
    GIT_FAILED,
    HOST_KEY_REJECTED,
    INVALID_SPEC,
    FlotillaError,
    SpecError,
    one_line,
)
from flotilla.hints import Target, ending_with_fix
from flotilla.hostkeys import KNOWN_HOSTS_KEY, KNOWN_HOSTS_SECRET, host_key_refusal, ssh_host
from flotilla.models import ClusterGroup, GitTarget, RolloutStrategy
from flotilla.settings import DEFAULT_SYSTEM_NAMESPACE
from flotilla.targeting import ClusterInfo, apply_switches, resolve_deployment
from flotilla.templating import process_values

_SHA = re.compile(r"^[0-9a-f]{40}$")
_MAX_ERROR = 300


def offered_host_key(repo: str) -> tuple[str, str]:
    """The type and fingerprint of the host key the server offers now (``ssh-keyscan``),
    for the message a person checks against the server owner's; empty strings when unknown."""
    target = ssh_host(repo) or ""
    host, _, port = target[1:].partition("]:") if target.startswith("[") else (target, "", "22")
    try:
        scan = subprocess.run(
            ["ssh-keyscan", "-T", "5", "-p", port or "22", "-t", "ed25519,ecdsa,rsa", host],
            capture_output=True,
            text=True,
            timeout=15,
        )
        line = next((x for x in scan.stdout.splitlines() if x and not x.startswith("#")), "")
        if not line:
            return "", ""
        listed = subprocess.run(
            ["ssh-keygen", "-l", "-f", "-"], input=line, capture_output=True, text=True, timeout=5
        ).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return "", ""
    if len(listed) < 4:
        return "", ""
    return listed[-1].strip("()"), listed[1]


class HostKeyError(FlotillaError):
    """The git server's SSH host key is unknown or changed: nothing is fetched until a person
    checks it and updates the known hosts."""

    type = HOST_KEY_REJECTED


# What git says when a server has no such commit or ref (git 2.39 to 2.47 wordings).
_MISSING_REF = ("couldn't find remote ref", "not our ref", "no such remote ref")


class GitError(FlotillaError):
    """A git command (ls-remote, fetch) failed: the server or the network may come back."""

    type = GIT_FAILED
    retryable = True


# ---------------------------------------------------------------------------------------------
# Git
# ---------------------------------------------------------------------------------------------


# Bundle workflows a sync_bundles call starts or signals at once.
SYNC_STARTS_AT_ONCE = 8


class GitOpsActivities:
    """Activities that need the git server, the secret store, the content store or Temporal."""

    def __init__(
        self,
        client: Client | None,
        secrets: SecretStore,
        content: ContentStore,
        workdir: Path,
        *,
        system_namespace: str = DEFAULT_SYSTEM_NAMESPACE,
        skip_host_key_checks: bool = False,
    ) -> None:
        self.client = client
        self.secrets = secrets
        self.content = content
        self.workdir = workdir
        # Fleet-wide known hosts live here; FLOTILLA_INSECURE_SKIP_HOST_KEY_CHECKS turns the
        # checks off for every GitRepo (insecure, and said in every GitRepo's status).
        self.system_namespace = system_namespace
        self.skip_host_key_checks = skip_host_key_checks

    @contextmanager
    def git_env(self, source: GitSource) -> Iterator[dict[str, str]]:
        """Environment for git with the GitRepo's TLS settings, credentials and SSH known
        hosts; the files it needs (CA bundle, ssh key, known_hosts) live in a private
        directory removed afterwards. A missing secret or known host is a one-line error."""
        env = {"GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true"}
        with tempfile.TemporaryDirectory(prefix="flotilla-git-") as tmp:
            try:
                if source.insecure_skip_tls_verify:
                    env["GIT_SSL_NO_VERIFY"] = "true"
                if source.ca_bundle:
                    ca = Path(tmp) / "ca.pem"
                    ca.write_bytes(base64.b64decode(source.ca_bundle))
                    env["GIT_SSL_CAINFO"] = str(ca)
                data = (
                    self.secrets.get(source.namespace, source.client_secret_name)
                    if source.client_secret_name
                    else {}
                )
                self._basic_auth(data, env)
                host = ssh_host(source.repo)
                if host is not None:
                    env["GIT_SSH_COMMAND"] = self._ssh_command(source, host, data, Path(tmp))
            except FlotillaError as err:
                raise to_application_error(err) from None
            yield env

    def _ssh_command(self, source: GitSource, host: str, data: dict[str, str], tmp: Path) -> str:
        """ssh with the secret's key and strict host-key checks against the known hosts."""
        argv = ["ssh", "-o", "BatchMode=yes", "-o", "GlobalKnownHostsFile=/dev/null"]
        key = data.get("ssh-privatekey")
        if key:
            path = tmp / "id"
            path.write_text(key if key.endswith("\n") else key + "\n")
            path.chmod(0o600)
            argv += ["-i", str(path), "-o", "IdentitiesOnly=yes"]
        if self.skip_host_key_checks:
            return shlex.join(
                [*argv, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
            )
        known = data.get(KNOWN_HOSTS_KEY) or self._fleet_known_hosts()
        if not known.strip():
            sources = self._known_hosts_sources(source, "nor")
            raise HostKeyError(
                f"{source.repo}: cannot verify the SSH host key of {host}: no "
                f"{KNOWN_HOSTS_KEY} in {sources}; add the host's key "
                "line (ssh-keyscan, after checking its fingerprint) there"
            )
        known_hosts = tmp / "known_hosts"
        known_hosts.write_text(known if known.endswith("\n") else known + "\n")
        return shlex.join(
            [*argv, "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known_hosts}"]
        )

    def _fleet_known_hosts(self) -> str:
        try:
            data = self.secrets.get(self.system_namespace, KNOWN_HOSTS_SECRET)
        except SecretNotFoundError:
            return ""
        return data.get(KNOWN_HOSTS_KEY, "")

    def _known_hosts_sources(self, source: GitSource, joiner: str) -> str:
        fleet_wide = f"secret {self.system_namespace}/{KNOWN_HOSTS_SECRET}"
        if source.client_secret_name:
            return f"secret {source.namespace}/{source.client_secret_name} {joiner} {fleet_wide}"
        return fleet_wide

    @staticmethod
    def _basic_auth(data: dict[str, str], env: dict[str, str]) -> None:
        if data.get("username") or data.get("password"):
            token = base64.b64encode(
                f"{data.get('username', '')}:{data.get('password', '')}".encode()
            ).decode()
            # Config through the environment: never on a command line others can read.
            env.update(
                {
                    "GIT_CONFIG_COUNT": "1",
                    "GIT_CONFIG_KEY_0": "http.extraHeader",
                    "GIT_CONFIG_VALUE_0": f"Authorization: Basic {token}",
                }
            )

    def git_error(self, source: GitSource, what: str, err: git.GitCommandError) -> ApplicationError:
        """A retryable ``GitError`` of one line naming the repository and the git call."""
        stderr = (err.stderr if isinstance(err.stderr, str) else str(err)).strip()
        # GitPython wraps git's own words as "stderr: '...'"; a person needs only git's.
        if stderr.startswith("stderr: '") and stderr.endswith("'"):
            stderr = stderr[len("stderr: '") : -1].strip()
        host = ssh_host(source.repo)
        refusal = host_key_refusal(stderr, host) if host else None
        if refusal is not None:
            if not refusal.fingerprint:
                key_type, fingerprint = offered_host_key(source.repo)
                refusal = replace(refusal, key_type=key_type, fingerprint=fingerprint)
            where = self._known_hosts_sources(source, "or")
            return to_application_error(HostKeyError(f"{source.repo}: {refusal.message(where)}"))
        message = ending_with_fix(f"{source.repo}: {what} failed: {stderr}", Target.GIT)
        return to_application_error(GitError(message))

    @activity.defn(name=LS_REMOTE)
    def ls_remote(self, request: LsRemoteRequest) -> LsRemoteResult:
        """Return the commit the GitRepo should deploy: ``revision`` when set, else the head
        of ``branch``. Cheap: no objects are transferred."""
        source = request.source
        warning = ""
        if self.skip_host_key_checks and ssh_host(source.repo):
            warning = (
                "SSH host keys are not verified (FLOTILLA_INSECURE_SKIP_HOST_KEY_CHECKS on the "
                "worker): a man in the middle would go unnoticed"
            )
        if source.revision and _SHA.match(source.revision):
            return LsRemoteResult(commit=source.revision, warning=warning)
        wanted = source.revision or source.branch
        refs = (
            [f"refs/tags/{wanted}^{{}}", f"refs/tags/{wanted}", f"refs/heads/{wanted}"]
            if source.revision
            else [f"refs/heads/{wanted}"]
        )
        with self.git_env(source) as env:
            try:
                output = run_git(["git", "ls-remote", source.repo, *refs], env=env, timeout=50)
            except git.GitCommandError as err:
                raise self.git_error(source, "ls-remote", err) from None
        found: dict[str, str] = {}
        for line in str(output).splitlines():
            sha, _, ref = line.partition("\t")
            found[ref] = sha
        for ref in refs:
            if ref in found:
                return LsRemoteResult(commit=found[ref], warning=warning)
        kind = "revision" if source.revision else "branch"
        raise to_application_error(
            SpecError(f"{source.repo}: {kind} {wanted!r} not found", type=INVALID_SPEC)
        )

    def _fetch(self, repo: git.Repo, source: GitSource, commit: str, env: dict[str, str]) -> str:
        """Check out ``commit`` with a depth-1 fetch and return the commit checked out.

        Servers that refuse to send an unadvertised commit get the branch (or tag) head
        instead, which is then the commit read; it differs only if the branch moved since
        ls-remote, and the next poll sees the same head anyway.
        """
        activity.heartbeat("fetching")
        ref = f"refs/tags/{source.revision}" if source.revision else f"refs/heads/{source.branch}"
        wanted = [commit]
        if not (source.revision and _SHA.match(source.revision)):
            wanted.append(ref)
        error: git.GitCommandError | None = None
        for target in wanted:
            try:
                run_git(
                    ["git", "fetch", "--depth", "1", source.repo, target],
                    env=env,
                    cwd=repo.working_dir,
                    timeout=500,
                )
                repo.git.execute(["git", "checkout", "-q", "FETCH_HEAD"])
                return str(repo.git.execute(["git", "rev-parse", "HEAD"])).strip()
            except git.GitCommandError as err:
                error = error or err
        assert error is not None
        stderr = error.stderr if isinstance(error.stderr, str) else ""
        if any(sign in stderr for sign in _MISSING_REF):
            # Not a blip: the server has no such commit; retrying only delays the status.
            raise to_application_error(
                SpecError(f"{source.repo}: commit {commit[:12]} not found", type=INVALID_SPEC)
            )
        raise self.git_error(source, f"fetch of {commit[:12]}", error) from None

    def _fetch_exact(
        self, repo: git.Repo, source: GitSource, commit: str, env: dict[str, str]
    ) -> str:
        """Check out ``commit`` (full or abbreviated) only if the branch or tag has it: the
        whole history of that ref is fetched (a pin is rare; an abbreviated name can only be
        resolved against history), never its head instead."""
        activity.heartbeat("fetching history")
        ref = f"refs/tags/{source.revision}" if source.revision else f"refs/heads/{source.branch}"
        named = source.revision or source.branch
        try:
            run_git(["git", "fetch", source.repo, ref], env=env, cwd=repo.working_dir, timeout=500)
        except git.GitCommandError as err:
            raise self.git_error(source, f"fetch of {named}", err) from None
        try:
            full = str(
                repo.git.execute(["git", "rev-parse", "--verify", "-q", f"{commit}^{{commit}}"])
            ).strip()
            repo.git.execute(["git", "merge-base", "--is-ancestor", full, "FETCH_HEAD"])
        except git.GitCommandError:
            raise to_application_error(
                SpecError(
                    f"{source.repo}: commit {commit[:12]!r} not found in {named} "
                    "(or the abbreviation is ambiguous)",
                    type=INVALID_SPEC,
                )
            ) from None
        repo.git.execute(["git", "checkout", "-q", full])
        return full

    def _verify(self, checkout: Path, commit: str, source: GitSource) -> None:
        """Nothing of an unsigned or wrongly signed commit is read (verifyCommits)."""
        assert source.verify_secret_name
        activity.heartbeat("verifying the signature")
        where = f"secret {source.namespace}/{source.verify_secret_name}"
        try:
            keys = self.secrets.get(source.namespace, source.verify_secret_name)
            verify_commit(checkout, commit, keys, where=where)
        except FlotillaError as err:
            named = FlotillaError(f"{source.repo}: {err}", type=err.type, retryable=err.retryable)
            raise to_application_error(named) from None

    @activity.defn(name=FETCH_BUNDLES)
    def fetch_bundles(self, request: FetchRequest) -> FetchResult:
        """Shallow-fetch ``commit``, read its bundles, store each by digest, return the refs.

        Heartbeats every second from a helper thread while it runs (a big chart's render, a
        slow store): its heartbeat timeout is short (``FETCH_HEARTBEAT``), so that an attempt
        lost on its way to a worker, or on a worker that died, is retried within seconds."""
        with heartbeating():
            return self._fetch_bundles(request)

    def _fetch_bundles(self, request: FetchRequest) -> FetchResult:
        source = request.source
        self.workdir.mkdir(parents=True, exist_ok=True)
        checkout = Path(tempfile.mkdtemp(prefix="checkout-", dir=self.workdir))
        try:
            with self.git_env(source) as env:
                repo = git.Repo.init(checkout)
                commit = (
                    self._fetch_exact(repo, source, request.commit, env)
                    if request.exact
                    else self._fetch(repo, source, request.commit, env)
                )
            if source.verify_secret_name:
                self._verify(checkout, commit, source)
            activity.heartbeat("reading")
            listing = read_checkout(checkout)
        finally:
            shutil.rmtree(checkout, ignore_errors=True)
        result = read_bundles(
            listing, gitrepo_name=request.gitrepo, paths=request.paths, namespace=request.namespace
        )
        if result.matches_nothing(request.paths):
            # Not an empty repository: the GitRepo points nowhere. Its last good bundles keep
            # running and its status says why nothing new is read.
            raise to_application_error(
                SpecError(
                    f"spec.paths: {', '.join(map(repr, result.unmatched_paths))} "
                    f"{'matches' if len(result.unmatched_paths) == 1 else 'match'} no "
                    f"directory at commit {commit[:12]}"
                )
            )
        refs = [
            BundleRef(
                name=name_bundle(request.gitrepo, bad.path),
                path=bad.path,
                digest="",
                error=one_line(bad.error, _MAX_ERROR),
            )
            for bad in result.invalid
        ]
        infos = [
            BundleInfo(
                name=b.name, labels=b.options.labels or {}, depends_on=b.options.depends_on or []
            )
            for b in result.bundles
        ]
        resolved: dict[str, list[DependencyRef]] = {}
        errors: dict[str, str] = {}
        for bundle, info in zip(result.bundles, infos, strict=True):
            try:
                deps = resolve_dependencies(info, infos, file=f"{bundle.path}/fleet.yaml")
            except FlotillaError as err:
                errors[bundle.name] = one_line(str(err), _MAX_ERROR)
                continue
            resolved[bundle.name] = [
                DependencyRef(bundle=d.bundle, accepted_states=list(d.accepted_states))
                for d in deps
            ]
        for cycle in find_cycles({n: [d.bundle for d in ds] for n, ds in resolved.items()}):
            for name in cycle:
                errors[name] = f"dependsOn: bundles wait for each other: {', '.join(cycle)}"
        for bundle in result.bundles:
            activity.heartbeat(bundle.name)
            try:
                digest = self.content.put_bundle(bundle)
            except ContentError as err:
                raise to_application_error(err) from None
            refs.append(
                BundleRef(
                    name=bundle.name,
                    path=bundle.path,
                    digest=digest,
                    labels=bundle.options.labels or {},
                    depends_on=resolved.get(bundle.name, []),
                    error=errors.get(bundle.name, ""),
                    image_scans=bool(bundle.options.image_scans),
                )
            )
        activity.logger.info(
            "gitrepo %s/%s: commit %s has %d bundles (%d invalid)",
            request.namespace,
            request.gitrepo,
            commit[:12],
            len(refs),
            sum(bool(r.error) for r in refs),
        )
        return FetchResult(commit=commit, bundles=refs, warnings=result.warnings[:20])

    # -----------------------------------------------------------------------------------------
    # Planning
    # -----------------------------------------------------------------------------------------

    @activity.defn(name=PLAN_BUNDLE)
    def plan_bundle(self, request: PlanRequest) -> PlanResult:
        """Decide which clusters get the bundle and with which options; store those options
        per cluster by digest so deploy activities read them from the content store."""
        try:
            return self._plan(request)
        except ContentError as err:
            raise to_application_error(err) from None

    def _plan(self, request: PlanRequest) -> PlanResult:
        bundle = self.content.get_bundle(request.bundle_digest)
        switches = request.switches
        targets = (
            [GitTarget.model_validate(t) for t in switches.targets]
            if switches.targets is not None
            else None
        )
        groups = [ClusterGroup.model_validate(g) for g in request.groups]
        file = f"{bundle.path}/fleet.yaml"
        result = PlanResult(
            strategy=bundle.options.rollout_strategy or RolloutStrategy(),
            paused=bundle.options.paused,
        )
        downstream = self._downstream(request.namespace, bundle, planning=True)
        if downstream is not None:
            result.downstream_digest = downstream.digest
        for cluster in request.clusters:
            info = ClusterInfo(
                name=cluster.name, namespace=request.namespace, labels=cluster.labels
            )
            try:
                match = resolve_deployment(targets, bundle.options, info, groups)
                if match is None:
                    continue
                options = apply_switches(match.options, switches)
                if options.helm is not None and options.helm.values:
                    values = process_values(
                        options.helm.values,
                        info,
                        disable_pre_process=bool(options.helm.disable_pre_process),
                        file=file,
                    )
                    options = options.model_copy(
                        update={"helm": options.helm.model_copy(update={"values": values})}
                    )
            except FlotillaError as err:
                result.errors[cluster.name] = one_line(str(err), _MAX_ERROR)
                continue
            payload = DeploymentOptions(
                options=options,
                cluster=info,
                namespace_selector=switches.namespace_selector,
                allow_namespace_creation=switches.allow_namespace_creation or None,
                downstream=downstream,
            )
            options_digest = self.content.put(_canonical(payload))
            result.targets.append(
                PlannedTarget(
                    cluster=cluster.name,
                    options_digest=options_digest,
                    deployment_id=deployment_id(request.bundle_digest, options_digest),
                    keep_resources=options.keep_resources,
                    delete_namespace=options.delete_namespace,
                )
            )
        return result

    def _downstream(
        self, namespace: str, bundle: Bundle, *, planning: bool = False
    ) -> DownstreamCopy | None:
        """The bundle's downstreamResources with the digest of their content now (a missing
        one counts as missing: the deploy then fails on it, and its creation is a change).

        A store that cannot be read fails the digest's poll (the bundle workflow asks again
        later); while planning it must not fail the plan (and with it the bundle workflow), so
        the entries count as unreadable: the deploy reads them again itself, and the next
        poll that reads them plans once more with their digest."""
        resources = bundle.options.downstream_resources
        if not resources:
            return None
        try:
            digest = resources_digest(read_resources(self.secrets, namespace, resources))
        except FlotillaError as err:
            if not planning:
                raise to_application_error(err) from None
            activity.logger.warning(
                "bundle %s: downstreamResources not read while planning: %s",
                bundle.name,
                one_line(str(err), _MAX_ERROR),
            )
            digest = unreadable_digest(resources)
        return DownstreamCopy(namespace=namespace, resources=resources, digest=digest)

    @activity.defn(name=DOWNSTREAM_DIGEST)
    def downstream_digest(self, request: DownstreamDigestRequest) -> DownstreamDigestResult:
        """The digest of the bundle's downstreamResources as they are now: a bundle workflow
        compares it with its plan's to re-plan (and re-deploy) when one of them changed."""
        try:
            bundle = self.content.get_bundle(request.bundle_digest)
        except ContentError as err:
            raise to_application_error(err) from None
        downstream = self._downstream(request.namespace, bundle)
        return DownstreamDigestResult(digest=downstream.digest if downstream else "")

    # -----------------------------------------------------------------------------------------
    # Bundle workflows
    # -----------------------------------------------------------------------------------------

    @activity.defn(name=SYNC_BUNDLES)
    async def sync_bundles(self, request: SyncBundlesRequest) -> SyncBundlesResult:
        """Signal each bundle workflow, starting it first when it does not run yet."""
        return await self._sync_bundles(request)

    @activity.defn(name=SYNC_BUNDLES_SHARED)
    async def sync_bundles_shared(self, request: SyncBundlesRequest) -> SyncBundlesResult:
        """``sync_bundles``, each signal with ``request.shared``'s fields added to it."""
        return await self._sync_bundles(request)

    async def _sync_bundles(self, request: SyncBundlesRequest) -> SyncBundlesResult:
        if self.client is None:
            raise to_application_error(
                FlotillaError("sync_bundles needs a Temporal client: a worker wiring bug")
            )
        client = self.client
        room = asyncio.Semaphore(SYNC_STARTS_AT_ONCE)
        done = 0

        async def start_one(start: BundleStart) -> None:
            nonlocal done
            async with room:
                await client.start_workflow(
                    request.workflow,
                    start.start_input,
                    id=start.workflow_id,
                    task_queue=request.task_queue,
                    id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                    start_signal=start.signal,
                    start_signal_args=[{**start.signal_arg, **request.shared}],
                    static_summary=start.static_summary or None,
                )
            done += 1
            activity.heartbeat(done)

        # Several at once: one after the other, 50 starts took 109 s at load 30 (the last
        # bundle began planning 1.6 min after the first; bench_gitops' timeline). Each start
        # is independent and idempotent (USE_EXISTING), so a failed one fails the activity,
        # whose retry starts or signals them all again, as a sequential retry did.
        outcomes = await asyncio.gather(
            *(start_one(start) for start in request.starts), return_exceptions=True
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return SyncBundlesResult(signalled=len(request.starts))


def _canonical(model: BaseModel) -> bytes:
    data = json.loads(model.model_dump_json(by_alias=True, exclude_none=True))
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
