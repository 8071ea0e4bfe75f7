"""Bundle discovery, content, style, naming and digest rules of flotilla.bundles."""

from __future__ import annotations

import pytest

from flotilla.bundles import (
    Bundle,
    BundleStyle,
    FileListing,
    ReadResult,
    limit_name,
    match_glob,
    name_bundle,
    parse_fleetignore,
    read_bundles,
    release_name,
)
from flotilla.errors import SpecError

CM = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\n"


def read(
    files: dict[str, bytes], symlinks: dict[str, str] | None = None, paths: list[str] | None = None
) -> ReadResult:
    listing = FileListing(files=files, symlinks=symlinks or {})
    return read_bundles(listing, gitrepo_name="repo", paths=paths or ["."])


def by_path(result: ReadResult) -> dict[str, Bundle]:
    return {b.path: b for b in result.bundles}


# --- naming: vectors from Fleet's own tests of its naming function --------------------------

STR50 = "1234567890" * 5
STR53 = STR50 + "123"
STR63 = STR50 + "1234567890" + "123"


@pytest.mark.parametrize(
    ("arg", "count", "expected"),
    [
        ("1234567", 5, "12345"),
        ("1234567", 6, "123456"),
        ("1234567", 7, "1234567"),
        ("1234567", 8, "1234567"),
        ("12345678", 8, "12345678"),
        ("12345678", 7, "1-25d55"),
        ("123456789", 8, "12-25f9e"),
        ("1-3456789", 8, "1-9b657"),
    ],
)
def test_limit_name(arg: str, count: int, expected: str) -> None:
    assert limit_name(arg, count) == expected


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        (STR53, STR53),
        (STR53 + "a", "12345678901234567890123456789012345678901234567-fdba4"),
        (STR63 + "a", "12345678901234567890123456789012345678901234567-eb12d"),
        ("long-name-test-shortpath-with@char", "long-name-test-shortpath-with-char-031bab5e"),
        ("long-name-test-shortpath-with+char", "long-name-test-shortpath-with-char-21c88393"),
        ("long-name-test-0.App_ ", "long-name-test-0-app-5bf6b3fb"),
        ("long-name-test--App_-_12.factor", "long-name-test-app-12-factor-0efbac37"),
        ("bundle.name.example.com", "bundle-name-example-com-645ef821"),
        (STR53[:46] + "-1234567", "1234567890123456789012345678901234567890123456-d0bce"),
    ],
)
def test_release_name_matches_fleet(arg: str, expected: str) -> None:
    assert release_name(arg) == expected


def test_name_bundle_joins_gitrepo_and_path() -> None:
    assert name_bundle("fleet-examples", "helm-local") == "fleet-examples-helm-local"
    assert name_bundle("repo", ".") == "repo"
    assert name_bundle("repo", "./a/b/") == "repo-a-b"
    upper = name_bundle("repo", "Apps/Web")
    assert upper.startswith("repo-apps-web-") and len(upper) == len("repo-apps-web-") + 8


def test_name_from_fleet_yaml_overrides_and_is_validated() -> None:
    result = read({"a/fleet.yaml": b"name: custom\n", "a/cm.yaml": CM})
    assert [b.name for b in result.bundles] == ["custom"]
    bad = read({"a/fleet.yaml": b"name: Bad_Name\n", "a/cm.yaml": CM})
    assert bad.invalid[0].error == (
        "a/fleet.yaml: name: 'Bad_Name' is not a valid DNS-1123 name of at most 53 characters"
    )


def test_duplicate_names_are_reported() -> None:
    result = read(
        {
            "a/fleet.yaml": b"name: same\n",
            "a/cm.yaml": CM,
            "b/fleet.yaml": b"name: same\n",
            "b/cm.yaml": CM,
        }
    )
    assert [b.path for b in result.bundles] == ["a"]
    assert "already used by the bundle in 'a'" in result.invalid[0].error


# --- discovery -------------------------------------------------------------------------------


def test_root_with_loose_yaml_is_one_bundle() -> None:
    result = read({"cm.yaml": CM, "sub/other.yaml": CM, "README.md": b"hi"})
    assert list(by_path(result)) == ["."]
    assert set(result.bundles[0].resources) == {"cm.yaml", "sub/other.yaml", "README.md"}


def test_root_without_yaml_and_dirs_without_fleet_yaml_are_not_bundles() -> None:
    result = read({"a/fleet.yaml": b"", "a/cm.yaml": CM, "docs/readme.md": b"x"})
    assert list(by_path(result)) == ["a"]


def test_nested_bundles_are_content_of_the_parent() -> None:
    files = {
        "app/fleet.yaml": b"defaultNamespace: app\n",
        "app/cm.yaml": CM,
        "app/child/fleet.yaml": b"defaultNamespace: child\n",
        "app/child/cm.yaml": CM,
    }
    bundles = by_path(read(files))
    assert list(bundles) == ["app", "app/child"]
    assert set(bundles["app"].resources) == {"cm.yaml", "child/fleet.yaml", "child/cm.yaml"}
    assert set(bundles["app/child"].resources) == {"cm.yaml"}


def test_paths_globs_each_scanned() -> None:
    files = {"x/a/cm.yaml": CM, "x/b/fleet.yaml": b"", "x/b/cm.yaml": CM, "y/cm.yaml": CM}
    result = read(files, paths=["x/*"])
    assert list(by_path(result)) == ["x/a", "x/b"]
    assert [b.name for b in result.bundles] == ["repo-x-a", "repo-x-b"]
    missing = read(files, paths=["nope"])
    assert missing.bundles == [] and "matches no directory" in missing.warnings[0]


def test_git_and_hidden_dirs_are_skipped() -> None:
    files = {
        ".git/config.yaml": CM,
        ".github/workflows/ci.yml": b"on: push\n",
        "a/.hidden.yaml": CM,
        "a/fleet.yaml": b"",
        "a/cm.yaml": CM,
        "a/.secret/x.yaml": CM,
    }
    result = read(files)
    assert list(by_path(result)) == ["a"]
    assert set(result.bundles[0].resources) == {"cm.yaml"}


def test_empty_bundle_is_skipped_with_warning() -> None:
    result = read({"a/fleet.yaml": b"defaultNamespace: x\n"})
    assert result.bundles == [] and "no resources" in result.warnings[0]


def test_values_files_are_merged_into_values_and_left_out_of_content() -> None:
    files = {
        "c/fleet.yaml": (
            b"helm:\n  values: {a: 1, m: {x: 1}}\n  valuesFiles: [v/one.yaml, v/two.yaml]\n"
        ),
        "c/Chart.yaml": b"name: c\nversion: 0.1.0\n",
        "c/v/one.yaml": b"m: {y: 2}\nb: 1\n",
        "c/v/two.yaml": b"b: 2\n",
    }
    bundle = read(files).bundles[0]
    assert "v/one.yaml" not in bundle.resources and "fleet.yaml" not in bundle.resources
    assert bundle.options.helm is not None
    assert bundle.options.helm.values == {"a": 1, "m": {"x": 1, "y": 2}, "b": 2}


def test_values_files_follow_fleets_resolution_rules() -> None:
    files = {
        "common/values.yaml": b"shared: true\nreplicas: 1\n",
        "apps/web/fleet.yaml": b"helm:\n  chart: chart\n  valuesFiles: [../../common/values.yaml"
        b", chart/prod.yaml]\n",
        "apps/web/chart/Chart.yaml": b"name: web\nversion: 0.1.0\n",
        "apps/web/chart/prod.yaml": b"replicas: 3\n",
        # Fleet drops a file named like an entry's base name at the bundle's top level too.
        "apps/web/prod.yaml": CM,
        "apps/web/chart/values.yaml": b"replicas: 0\n",
    }
    bundle = read(files, paths=["apps"]).bundles[0]
    assert bundle.options.helm is not None
    assert bundle.options.helm.values == {"shared": True, "replicas": 3}
    assert sorted(bundle.resources) == ["chart/Chart.yaml", "chart/values.yaml"]


@pytest.mark.parametrize("entry", ["../../../outside.yaml", "/etc/passwd"])
def test_values_file_outside_the_repository_is_an_error(entry: str) -> None:
    files = {
        "apps/web/fleet.yaml": f"helm:\n  valuesFiles: [{entry}]\n".encode(),
        "apps/web/Chart.yaml": b"name: c\n",
    }
    assert read(files, paths=["apps"]).invalid[0].error == (
        f"apps/web/fleet.yaml: helm.valuesFiles[0]: {entry!r} is outside the repository"
    )


def test_missing_values_file_is_an_error() -> None:
    files = {"c/fleet.yaml": b"helm:\n  valuesFiles: [nope.yaml]\n", "c/Chart.yaml": b"name: c\n"}
    assert read(files).invalid[0].error == (
        "c/fleet.yaml: helm.valuesFiles[0]: 'nope.yaml' does not exist in the bundle"
    )


def test_one_bad_fleet_yaml_does_not_hide_the_others() -> None:
    files = {
        "good/cm.yaml": CM,
        "good/fleet.yaml": b"",
        "bad/fleet.yaml": b"helm: [1\n",
        "bad/cm.yaml": CM,
    }
    result = read(files)
    assert [b.path for b in result.bundles] == ["good"]
    assert result.invalid[0].path == "bad"
    assert result.invalid[0].error.startswith("bad/fleet.yaml: ")


# --- .fleetignore ----------------------------------------------------------------------------


def test_parse_fleetignore() -> None:
    assert parse_fleetignore("# c\n\n*.md  \nkeep\\ \nsub/*\n") == ["*.md", "keep\\ ", "sub/*"]


def test_fleetignore_is_inherited_and_matches_base_names() -> None:
    files = {
        "a/fleet.yaml": b"",
        "a/.fleetignore": b"*.md\nsecret.yaml\ntmp/*\n",
        "a/cm.yaml": CM,
        "a/README.md": b"x",
        "a/sub/secret.yaml": CM,
        "a/sub/notes.md": b"x",
        "a/sub/ok.yaml": CM,
        "a/tmp/x.yaml": CM,
        "a/deep/tmp/y.yaml": CM,
        "a/other/.fleetignore": b"ok.yaml\n",
        "a/other/ok.yaml": CM,
        "a/other/two.yaml": CM,
    }
    resources = read(files).bundles[0].resources
    assert set(resources) == {"cm.yaml", "sub/ok.yaml", "other/two.yaml"}


def test_fleetignore_in_sibling_does_not_leak() -> None:
    files = {
        "a/fleet.yaml": b"",
        "a/x/.fleetignore": b"*.yaml\n",
        "a/x/one.yaml": CM,
        "a/y/one.yaml": CM,
    }
    assert set(read(files).bundles[0].resources) == {"y/one.yaml"}


# --- style -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("files", "style"),
    [
        ({"a/Chart.yaml": b"name: a\n", "a/kustomization.yaml": b"", "a/fleet.yaml": b""}, "helm"),
        ({"a/fleet.yaml": b"helm: {chart: ch}\n", "a/ch/Chart.yaml": b"name: c\n"}, "helm"),
        (
            {"a/fleet.yaml": b"helm: {chart: app, repo: 'https://r.example', version: '1.*'}\n"},
            "helm",
        ),
        ({"a/fleet.yaml": b"helm: {chart: 'oci://r.example/c/app', version: 1.0.0}\n"}, "helm"),
        ({"a/fleet.yaml": b"helm: {chart: 'https://r.example/app-1.0.0.tgz'}\n"}, "helm"),
        ({"a/fleet.yaml": b"", "a/kustomization.yaml": b"resources: []\n"}, "kustomize"),
        ({"a/fleet.yaml": b"kustomize: {dir: k}\n", "a/k/kustomization.yaml": b""}, "kustomize"),
        ({"a/fleet.yaml": b"", "a/cm.yaml": CM}, "raw"),
    ],
)
def test_style_detection(files: dict[str, bytes], style: str) -> None:
    result = read(files)
    assert result.invalid == []
    assert result.bundles[0].style == BundleStyle(style)


def test_missing_chart_dir_is_an_error() -> None:
    result = read({"a/fleet.yaml": b"helm: {chart: charts/nope}\n", "a/cm.yaml": CM})
    assert result.invalid[0].error == (
        "a/fleet.yaml: helm.chart: 'charts/nope' has no Chart.yaml in the bundle "
        "(and is not a repo, oci:// or .tgz URL chart)"
    )


def test_nonexistent_overlay_is_an_error_at_read_time() -> None:
    files = {
        "a/fleet.yaml": b"targetCustomizations:\n- name: x\n  yaml: {overlays: [qa]}\n",
        "a/cm.yaml": CM,
        "a/overlays/dev/cm.yaml": CM,
    }
    assert read(files).invalid[0].error == (
        "a/fleet.yaml: targetCustomizations[0].yaml.overlays: 'qa' does not exist "
        "(no overlays/qa/ directory)"
    )


# --- symlinks and limits ---------------------------------------------------------------------


def test_symlinks_inside_are_followed() -> None:
    files = {"shared/cm.yaml": CM, "a/fleet.yaml": b""}
    result = read(files, {"a/cm.yaml": "../shared/cm.yaml", "a/dir": "../shared"})
    assert by_path(result)["a"].resources == {"cm.yaml": CM, "dir/cm.yaml": CM}


@pytest.mark.parametrize("target", ["../../etc/passwd", "/etc/passwd"])
def test_symlink_outside_the_checkout_is_an_error(target: str) -> None:
    result = read({"a/fleet.yaml": b"", "a/ok.yaml": CM}, {"a/evil.yaml": target})
    assert result.invalid[0].error == (
        f"a/evil.yaml: symlink points outside the checkout ({target!r})"
    )


def test_too_large_file_is_an_error() -> None:
    listing = FileListing(
        files={"a/fleet.yaml": b"", "a/ok.yaml": CM}, too_large={"a/big.yaml": 52428800}
    )
    result = read_bundles(listing, gitrepo_name="r")
    assert "a/big.yaml: file is 52428800 bytes, over the limit" in result.invalid[0].error


# --- digest ----------------------------------------------------------------------------------


def digest(files: dict[str, bytes]) -> str:
    return read(files).bundles[0].digest


BASE = {
    "a/fleet.yaml": b"defaultNamespace: x\nhelm:\n  values: {a: 1, b: 2}\n",
    "a/cm.yaml": CM,
    "a/README.md": b"hello",
}


def test_digest_is_stable_and_ignores_fleet_yaml_formatting() -> None:
    assert digest(BASE) == digest(dict(BASE))
    reordered = {
        **BASE,
        "a/fleet.yaml": b"# comment\nhelm:\n  values: {b: 2, a: 1}\ndefaultNamespace: x\n",
    }
    assert digest(reordered) == digest(BASE)


@pytest.mark.parametrize(
    "change",
    [
        {"a/cm.yaml": CM + b"data: {k: v}\n"},
        {"a/README.md": b"hello again"},
        {"a/new.yaml": CM},
        {"a/fleet.yaml": b"defaultNamespace: y\nhelm:\n  values: {a: 1, b: 2}\n"},
        {"a/fleet.yaml": b"defaultNamespace: x\nhelm:\n  values: {a: 1, b: 3}\n"},
    ],
)
def test_digest_changes_with_content_or_options(change: dict[str, bytes]) -> None:
    assert digest({**BASE, **change}) != digest(BASE)


def test_digest_does_not_mix_path_and_bytes() -> None:
    one = {"a/fleet.yaml": b"", "a/ab.yaml": b"c"}
    two = {"a/fleet.yaml": b"", "a/a.yaml": b"bc"}
    assert digest(one) != digest(two)


@pytest.mark.parametrize(
    ("links", "error"),
    [
        ({"a/loop": ".."}, "a/loop: symlink loops back to its own directory ('..')"),
        ({"a/self": "."}, "a/self: symlink loops back to its own directory ('.')"),
        ({"a/gone.yaml": "nope.yaml"}, "a/gone.yaml: symlink target does not exist ('nope.yaml')"),
        (
            {"a/x.yaml": "y.yaml", "a/y.yaml": "x.yaml"},
            "a/x.yaml: symlink cannot be resolved ('y.yaml')",
        ),
        (
            {"a/chain.yaml": "evil.yaml", "a/evil.yaml": "/etc/passwd"},
            "a/chain.yaml: symlink points outside the checkout ('/etc/passwd')",
        ),
    ],
)
def test_bad_symlinks_make_the_bundle_invalid(links: dict[str, str], error: str) -> None:
    result = read({"a/fleet.yaml": b"", "a/ok.yaml": CM}, links)
    assert result.bundles == []
    assert result.invalid[0].error == error


def test_symlink_chain_inside_is_followed() -> None:
    links = {"a/one.yaml": "two.yaml", "a/two.yaml": "../shared/cm.yaml"}
    result = read({"a/fleet.yaml": b"", "shared/cm.yaml": CM}, links)
    assert by_path(result)["a"].resources == {"one.yaml": CM, "two.yaml": CM}


@pytest.mark.parametrize(
    ("pattern", "name", "matches"),
    [
        ("*.md", "README.md", True),
        ("*.md", "a/b.md", False),
        ("?.yaml", "a.yaml", True),
        ("?.yaml", "ab.yaml", False),
        ("[a-c]x", "bx", True),
        ("[^a-c]x", "bx", False),
        ("[^a-c]x", "dx", True),
        ("[!a]x", "!x", True),  # Go has no "!" negation: it is a literal in the class
        ("\\*.yaml", "*.yaml", True),
        ("\\*.yaml", "a.yaml", False),
        ("a.b", "axb", False),
    ],
)
def test_globs_follow_go_filepath_match(pattern: str, name: str, matches: bool) -> None:
    assert match_glob(pattern, name, where="t") is matches


def test_broken_fleetignore_pattern_names_its_file() -> None:
    result = read(
        {"a/fleet.yaml": b"", "a/cm.yaml": CM, "a/sub/.fleetignore": b"[oops\n", "a/sub/x.yaml": CM}
    )
    assert result.invalid[0].error == (
        "a/sub/.fleetignore: '[oops' is not a valid glob (unclosed [)"
    )


def test_broken_paths_glob_fails_the_read() -> None:
    with pytest.raises(SpecError) as err:
        read({"a/cm.yaml": CM}, paths=["a[", "a"])
    assert str(err.value) == "gitrepo repo: paths: 'a[' is not a valid glob (unclosed [)"
