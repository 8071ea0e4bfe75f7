"""HelmOps' pure rules: chart sources, version choice, the bundle a version becomes, status."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from flotilla.errors import FlotillaError, SpecError
from flotilla.helmops import (
    HELMOP_LABEL,
    ChartKind,
    chart_source,
    choose_chart_version,
    fold_values_files,
    helmop_bundle,
    helmop_dependencies,
    helmop_options,
    helmop_selectors,
    helmop_targets,
    index_versions,
    oci_tag_versions,
    polling_seconds,
    render_secret_refs,
    summarize_helmop,
    unselected,
)
from flotilla.models import HelmOp, HelmOpSpec
from flotilla.notifications import load_objects
from flotilla.status import BundleReport, BundleState, RepoState


def spec(**helm: Any) -> HelmOpSpec:
    extra = helm.pop("extra", {})
    return HelmOpSpec.model_validate({"helm": helm, **extra})


@pytest.mark.parametrize(
    ("helm", "kind", "url", "chart"),
    [
        (
            {"repo": "https://charts.example/", "chart": "app"},
            ChartKind.REPO,
            "https://charts.example",
            "app",
        ),
        (
            {"repo": "oci://reg.example:5000/charts/app"},
            ChartKind.OCI,
            "oci://reg.example:5000/charts/app",
            "",
        ),
        (
            {"chart": "https://x.example/app-1.0.0.tgz"},
            ChartKind.TARBALL,
            "https://x.example/app-1.0.0.tgz",
            "",
        ),
    ],
)
def test_fleets_three_chart_forms(
    helm: dict[str, str], kind: ChartKind, url: str, chart: str
) -> None:
    source = chart_source(spec(**helm), file="h.yaml")
    assert (source.kind, source.url, source.chart) == (kind, url, chart)


@pytest.mark.parametrize(
    ("helm", "field", "words"),
    [
        ({}, "spec.helm.chart", "needs the chart's name"),
        ({"chart": "app"}, "spec.helm.repo", "needs the Helm repository's URL"),
        ({"repo": "https://c.example"}, "spec.helm.chart", "needs the chart's name"),
        ({"repo": "oci://reg/charts/app", "chart": "app"}, "spec.helm.chart", "leave chart empty"),
        ({"repo": "oci://reg"}, "spec.helm.repo", "names no chart"),
        (
            {"chart": "https://x/app.tgz", "version": "1.0.0"},
            "spec.helm.version",
            "takes no version",
        ),
        ({"chart": "https://x/app.tgz", "repo": "https://x"}, "spec.helm.repo", "takes no repo"),
        (
            {"repo": "ftp://c.example", "chart": "app"},
            "spec.helm.repo",
            "is not a http:// or https://",
        ),
    ],
)
def test_a_chart_form_fleet_refuses_is_one_line_naming_the_field(
    helm: dict[str, str], field: str, words: str
) -> None:
    with pytest.raises(SpecError) as caught:
        chart_source(spec(**helm), file="h.yaml")
    assert str(caught.value).startswith(f"h.yaml: {field}: ")
    assert words in str(caught.value)
    assert "\n" not in str(caught.value)


def test_no_helm_at_all_is_refused() -> None:
    with pytest.raises(SpecError, match=r"h.yaml: spec.helm: a HelmOp needs"):
        chart_source(HelmOpSpec(), file="h.yaml")


@pytest.mark.parametrize(
    ("versions", "wanted", "chosen"),
    [
        (["1.0.0", "1.2.0", "1.10.0", "2.0.0"], "^1.0", "1.10.0"),
        (["1.0.0", "1.2.0", "2.0.0"], ">=1.1 <2", "1.2.0"),
        (["1.0.0", "1.1.0", "1.2.0-rc.1"], "*", "1.1.0"),  # no pre-release unless asked
        (["1.0.0", "1.2.0-rc.1"], ">=1.2.0-rc.0", "1.2.0-rc.1"),
        (["1.0.0", "1.1.0", "1.2.0"], "1.1.0", "1.1.0"),  # exact
        (["0.9.0", "1.0.0", "1.0.5"], "~1.0.0", "1.0.5"),
    ],
)
def test_the_newest_matching_version_is_chosen(
    versions: list[str], wanted: str, chosen: str
) -> None:
    assert choose_chart_version(versions, wanted, where="chart 'a'") == chosen


def test_no_match_and_missing_exact_version_name_what_is_offered() -> None:
    with pytest.raises(FlotillaError) as caught:
        choose_chart_version(["1.0.0", "1.1.0"], "^2.0", where="chart 'a' of http://r")
    assert str(caught.value) == (
        "chart 'a' of http://r: no version matches '^2.0' (newest offered: 1.1.0, 1.0.0)"
    )
    with pytest.raises(FlotillaError, match=r"version 3.0.0 not found \(newest offered: 1.1.0"):
        choose_chart_version(["1.0.0", "1.1.0"], "3.0.0", where="chart 'a'")


def test_index_versions_and_an_unknown_chart() -> None:
    index = (
        "apiVersion: v1\nentries:\n  app:\n  - version: 1.0.0\n  - version: 1.1.0\n  other: []\n"
    )
    assert index_versions(index, "app", where="http://r") == ["1.0.0", "1.1.0"]
    with pytest.raises(
        FlotillaError, match=r"^http://r: no chart 'nope' in the repository \(it has: app, other\)$"
    ):
        index_versions(index, "nope", where="http://r")
    with pytest.raises(FlotillaError, match="no 'entries' map"):
        index_versions("[]", "app", where="http://r")


def test_oci_tags_carry_build_metadata_with_an_underscore() -> None:
    assert oci_tag_versions(["1.0.0", "1.0.0_build.1"]) == ["1.0.0", "1.0.0+build.1"]


@pytest.mark.parametrize(
    ("helm", "interval", "seconds"),
    [
        ({"repo": "https://r", "chart": "a", "version": "^1"}, "1m", 60.0),
        ({"repo": "https://r", "chart": "a"}, "30s", 30.0),  # empty version: newest, polled
        ({"repo": "https://r", "chart": "a", "version": "1.2.3"}, "1m", 0.0),  # exact: never
        ({"chart": "https://x/a.tgz"}, "1m", 0.0),  # a tarball has no versions
        ({"repo": "https://r", "chart": "a", "version": "^1"}, None, 0.0),
        ({"repo": "https://r", "chart": "a", "version": "^1"}, "0", 0.0),
    ],
)
def test_what_is_polled(helm: dict[str, str], interval: str | None, seconds: float) -> None:
    extra = {"pollingInterval": interval} if interval is not None else {}
    assert polling_seconds(spec(**helm, extra=extra)) == seconds


def test_the_bundle_pins_the_version_and_carries_the_spec() -> None:
    helmop = spec(
        repo="oci://reg:5000/charts/app",
        version="^1",
        values={"a": 1},
        extra={
            "labels": {"team": "x"},
            "namespace": "apps",
            "paused": True,
            "rolloutStrategy": {"maxUnavailable": 1},
            "targets": [
                {
                    "name": "prod",
                    "clusterSelector": {"matchLabels": {"env": "prod"}},
                    "helm": {"values": {"a": 2}},
                }
            ],
        },
    )
    options = helmop_options("app", helmop, "1.4.0")
    assert options.helm is not None
    assert (options.helm.chart, options.helm.repo, options.helm.version) == (
        "oci://reg:5000/charts/app",
        None,
        "1.4.0",
    )
    assert options.labels == {"team": "x", HELMOP_LABEL: "app"}
    assert options.namespace == "apps" and options.paused
    assert options.rollout_strategy is not None and options.rollout_strategy.max_unavailable == 1
    assert (
        options.targets and options.targets[0].helm and options.targets[0].helm.values == {"a": 2}
    )
    assert helmop_targets(helmop) == [
        {"name": "prod", "clusterSelector": {"matchLabels": {"env": "prod"}}}
    ]
    first, second = helmop_bundle("app", helmop, "1.4.0"), helmop_bundle("app", helmop, "1.5.0")
    assert first.digest != second.digest and first.resources == {}


def test_no_targets_means_the_gitrepo_default() -> None:
    assert helmop_targets(spec(repo="https://r", chart="a")) is None


def test_credentials_go_to_the_helmops_own_url_only() -> None:
    refs = render_secret_refs(
        "ns", spec(repo="https://r.example/charts", chart="a", extra={"helmSecretName": "creds"})
    )
    assert refs is not None
    assert (refs.helm_secret_name, refs.helm_repo_url_regex) == (
        "creds",
        r"https://r\.example/charts",
    )
    assert render_secret_refs("ns", spec(repo="https://r", chart="a")) is None


def test_values_files_fold_under_values_in_order() -> None:
    helmop = spec(
        repo="https://r",
        chart="a",
        values={"a": 1, "m": {"x": 1}},
        valuesFiles=["one.yaml", "two.yaml"],
    )
    folded = fold_values_files(
        helmop, {"one.yaml": "a: 2\nm: {y: 2}\n", "two.yaml": "b: 3\n"}, file="dir/h.yaml"
    )
    assert folded.helm is not None
    assert folded.helm.values == {"a": 2, "m": {"x": 1, "y": 2}, "b": 3}
    assert folded.helm.values_files is None
    with pytest.raises(
        SpecError,
        match=r"^dir/h.yaml: spec.helm.valuesFiles\[1\]: 'two.yaml' does not exist beside h.yaml$",
    ):
        fold_values_files(helmop, {"one.yaml": "a: 2\n"}, file="dir/h.yaml")


HELMOP = """apiVersion: fleet.cattle.io/v1alpha1
kind: HelmOp
metadata: {name: app, namespace: ns}
spec:
  helm: {repo: "https://r", chart: app, version: "%s"}
  pollingInterval: %s
"""


def test_apply_reads_a_helmop_and_refuses_a_bad_one_in_one_line() -> None:
    (helmop,), warnings = load_objects(HELMOP % ("^1.0", "1m"), file="h.yaml")
    assert isinstance(helmop, HelmOp) and warnings == []
    with pytest.raises(SpecError) as caught:
        load_objects(HELMOP % ("^^1", "1m"), file="h.yaml")
    assert str(caught.value).startswith("h.yaml: spec.helm.version: ")
    with pytest.raises(SpecError, match=r"^h.yaml: spec.pollingInterval: "):
        load_objects(HELMOP % ("^1", "5d"), file="h.yaml")
    with pytest.raises(SpecError, match=r"^h.yaml: spec.dependsOn\[1\]: needs a 'name' or a"):
        load_objects(HELMOP % ("^1", "1m") + "  dependsOn: [{name: db}, {}]\n", file="h.yaml")
    (by_selector,), _ = load_objects(
        HELMOP % ("^1", "1m") + "  dependsOn: [{name: db}, {selector: {matchLabels: {a: b}}}]\n",
        file="h.yaml",
    )
    assert isinstance(by_selector, HelmOp)


def test_depends_on_by_name_with_accepted_states() -> None:
    deps = helmop_dependencies(
        HelmOpSpec.model_validate(
            {
                "dependsOn": [
                    {"name": "db"},
                    {"name": "cache", "acceptedStates": ["Ready", "Modified"]},
                ]
            }
        )
    )
    assert [(d.bundle, [str(s) for s in d.accepted_states]) for d in deps] == [
        ("db", ["Ready"]),
        ("cache", ["Ready", "Modified"]),
    ]


def test_depends_on_by_selector_waits_for_the_selected_bundles() -> None:
    spec = HelmOpSpec.model_validate(
        {
            "dependsOn": [
                {"selector": {"matchLabels": {"tier": "db"}}, "acceptedStates": ["Modified"]},
                {"name": "cache"},
                {"selector": {"matchLabels": {"tier": "queue"}}},
            ]
        }
    )
    assert [s.match_labels for s in helmop_selectors(spec)] == [{"tier": "db"}, {"tier": "queue"}]
    deps = helmop_dependencies(spec, [["pg", "cache"], ["mq"]])
    assert [(d.bundle, [str(s) for s in d.accepted_states]) for d in deps] == [
        ("pg", ["Modified"]),
        ("cache", ["Modified"]),
        ("mq", ["Ready"]),
    ]
    assert unselected(spec, [["pg"], ["mq"]]) == ""
    assert unselected(spec, [["pg"], []]) == (
        "spec.dependsOn: selector {'matchLabels': {'tier': 'queue'}} selects no bundle of the "
        "namespace yet; the chart waits for one"
    )
    assert unselected(spec, []).startswith(
        "spec.dependsOn: selector {'matchLabels': {'tier': 'db'}"
    )
    # Nothing selected yet: only the names.
    assert [d.bundle for d in helmop_dependencies(spec)] == ["cache"]


def test_status_keeps_the_old_version_and_says_why_nothing_new_deploys() -> None:
    since = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    report = BundleReport(
        bundle="app", commit="1.0.0", ready=2, desired=2, state=BundleState.READY, message=""
    )
    ok = summarize_helmop(
        "app", report, version="1.0.0", commit="1.0.0", error="", error_since=None
    )
    assert (ok.state, ok.ready_bundle_deployments) == (BundleState.READY, "2/2")
    down = summarize_helmop(
        "app",
        report,
        version="1.0.0",
        commit="1.0.0",
        error="http://r/index.yaml: refused",
        error_since=since,
    )
    assert down.state is RepoState.CHART_ERROR
    assert down.message == (
        "http://r/index.yaml: refused (since 2026-01-02T03:04:05Z; still serving 1.0.0)"
    )
    assert down.ready_bundle_deployments == "2/2"
    never = summarize_helmop(
        "app", None, version="", commit="", error="no version matches", error_since=since
    )
    assert never.state is RepoState.CHART_ERROR and never.message.endswith("nothing deployed)")
    waiting = summarize_helmop("app", None, version="", commit="", error="", error_since=None)
    assert (waiting.state, waiting.message) == (
        BundleState.WAIT_APPLIED,
        "choosing the chart version",
    )
