"""What a release ships: one version everywhere, the Python distributions, the workflows.

The workflows (.github/workflows/release.yml and ci.yml) cannot run here; what can be
checked offline is: actionlint (built from its Go module) accepts them, the distributions
the release builds pass ``twine check --strict``, the version it checks (tag =
pyproject.toml = Chart.yaml) agrees in the repository, and CI runs the whole suite with each
dependency set.
"""

from __future__ import annotations

import email
import fnmatch
import re
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.go_tools import go_tool

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "redisqueue-operator"
WORKFLOW = REPO / ".github" / "workflows" / "release.yml"
CI_WORKFLOW = REPO / ".github" / "workflows" / "ci.yml"
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.y*ml"))


def package_version() -> str:
    """``redisqueue.__version__``, read from the source (the one place it is written)."""
    init = (REPO / "operator" / "redisqueue" / "__init__.py").read_text()
    (version,) = re.findall(r'^__version__ = "([^"]+)"$', init, flags=re.MULTILINE)
    return version


def test_the_package_takes_its_version_from_the_one_source() -> None:
    with (REPO / "pyproject.toml").open("rb") as f:
        pyproject = tomllib.load(f)
    assert "version" not in pyproject["project"]
    assert pyproject["project"]["dynamic"] == ["version"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "redisqueue.__version__"
    }
    assert re.fullmatch(r"\d+\.\d+\.\d+(-[0-9A-Za-z.]+)?", package_version())


def test_version_flag_prints_the_package_version() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "redisqueue.controller", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"redisqueue {package_version()}\n"


# --------------------------------------------------------------------------- one version


def test_chart_version_and_app_version_are_the_package_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["version"] == chart["appVersion"] == package_version()
    (image,) = yaml.safe_load(chart["annotations"]["artifacthub.io/images"])
    assert image["image"].endswith(f":{package_version()}")


def test_changelog_has_a_section_for_the_current_version() -> None:
    changelog = (REPO / "CHANGELOG.md").read_text()
    assert f"\n## [{package_version()}]" in changelog
    assert "\n## [Unreleased]" in changelog


def test_license_file_is_the_declared_license() -> None:
    with (REPO / "pyproject.toml").open("rb") as f:
        declared = tomllib.load(f)["project"]["license"]
    assert declared == "Apache-2.0"
    text = (REPO / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert yaml.safe_load((CHART / "Chart.yaml").read_text())["annotations"]["licenses"] == (
        declared
    )


# --------------------------------------------------------------------------- python dists


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``python -m build`` (isolated, as the workflow runs it) into a temporary folder."""
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(REPO)],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


def test_distributions_pass_twine_check_strict(dists: Path) -> None:
    files = sorted(dists.iterdir())
    version = package_version()
    assert [f.name for f in files] == [
        f"redisqueue_operator-{version}-py3-none-any.whl",
        f"redisqueue_operator-{version}.tar.gz",
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *map(str, files)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("PASSED") == 2, proc.stdout


def test_wheel_carries_the_license_the_types_and_the_command(dists: Path) -> None:
    version = package_version()
    (wheel,) = dists.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = f"redisqueue_operator-{version}.dist-info"
        metadata = email.message_from_bytes(archive.read(f"{info}/METADATA"))
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
    assert f"{info}/licenses/LICENSE" in names
    assert "redisqueue/py.typed" in names
    assert not [n for n in names if n.startswith(("tests/", "operator/")) or "__pycache__" in n]
    assert metadata["Version"] == version
    assert metadata["License-Expression"] == "Apache-2.0"
    assert "redisqueue = redisqueue.controller.cli:main" in entry_points
    (sdist,) = dists.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        assert f"redisqueue_operator-{version}/LICENSE" in archive.getnames()


# --------------------------------------------------------------------------- the workflow


def _workflow(path: Path = WORKFLOW) -> dict[Any, Any]:
    workflow: dict[Any, Any] = yaml.safe_load(path.read_text())
    return workflow


def _triggers(workflow: dict[Any, Any]) -> dict[str, Any]:
    trigger: dict[str, Any] = workflow[True] if True in workflow else workflow["on"]
    return trigger  # YAML 1.1 reads a bare on: as True


def _steps(job: str) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = _workflow()["jobs"][job]["steps"]
    return steps


def _uses(job: str, action: str) -> dict[str, Any]:
    for step in _steps(job):
        if str(step.get("uses", "")).startswith(action + "@"):
            return step
    raise AssertionError(f"job {job} does not use {action}")


def _actionlint(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(go_tool("actionlint")), "-no-color", *map(str, paths)],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.gotools
@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda path: path.name)
def test_every_workflow_passes_actionlint(workflow: Path) -> None:
    proc = _actionlint(workflow)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_workflows_linted_are_the_release_and_ci() -> None:
    assert {w.name for w in WORKFLOWS} == {"release.yml", "ci.yml"}


@pytest.mark.gotools
def test_actionlint_catches_a_broken_workflow(tmp_path: Path) -> None:
    # The checks above are not vacuous: a wrong input name and an unknown expression fail
    # them, in either workflow.
    broken = WORKFLOW.read_text().replace("platforms: linux/amd64", "platform: linux/amd64")
    broken = broken.replace("${{ github.ref_name }}", "${{ github.ref_nam }}")
    broken_ci = CI_WORKFLOW.read_text().replace("${{ matrix.deps }}", "${{ matrix.dep }}")
    folder = tmp_path / ".github" / "workflows"
    folder.mkdir(parents=True)
    (folder / "release.yml").write_text(broken)
    (folder / "ci.yml").write_text(broken_ci)
    proc = _actionlint(folder / "release.yml", folder / "ci.yml")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert '"platform" is not defined' in proc.stdout, proc.stdout
    assert "ref_nam" in proc.stdout, proc.stdout
    assert 'property "dep" is not defined' in proc.stdout, proc.stdout


def test_release_runs_on_version_tags_only() -> None:
    workflow = _workflow()
    trigger = _triggers(workflow)
    assert set(trigger) == {"push"}
    assert set(trigger["push"]) == {"tags"}
    for pattern in trigger["push"]["tags"]:
        assert pattern.startswith("v[0-9]+.")
    assert workflow["permissions"] == {"contents": "read"}


def test_release_checks_that_tag_package_and_chart_agree() -> None:
    (check,) = [s for s in _steps("verify") if s.get("id") == "version"]
    script = check["run"]
    assert "operator/redisqueue/__init__.py" in script
    assert "Chart.yaml" in script and "appVersion" in script
    assert any(s.get("run") == "./tests/run.sh" for s in _steps("verify"))
    for job in ("python", "image", "chart"):
        needs = _workflow()["jobs"][job]["needs"]
        assert "verify" in ([needs] if isinstance(needs, str) else needs), job


def test_release_builds_a_multi_arch_image_with_oci_labels() -> None:
    build = _uses("image", "docker/build-push-action")["with"]
    assert build["file"] == "operator/Dockerfile" and build["context"] == "."
    assert set(build["platforms"].split(",")) == {"linux/amd64", "linux/arm64"}
    assert build["push"] is True
    assert build["labels"] == "${{ steps.meta.outputs.labels }}"
    meta = _uses("image", "docker/metadata-action")["with"]
    assert meta["images"] == "ghcr.io/${{ github.repository_owner }}/redisqueue-operator"
    labels = dict(line.split("=", 1) for line in meta["labels"].split("\n") if line)
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert labels["org.opencontainers.image.version"] == "${{ needs.verify.outputs.version }}"
    _uses("image", "docker/setup-qemu-action")  # emulation for the arm64 build
    assert _workflow()["jobs"]["image"]["permissions"]["packages"] == "write"


def test_release_pushes_the_chart_as_an_oci_artifact() -> None:
    (push,) = [s for s in _steps("chart") if "helm push" in s.get("run", "")]
    script = push["run"]
    assert "helm package charts/redisqueue-operator" in script
    assert re.search(r'helm push "dist/redisqueue-operator-\$\{VERSION\}\.tgz" "oci://', script)
    # The registry password goes through stdin, never into the command line.
    assert "--password-stdin" in script and "--password " not in script
    # The chart's README and NOTES point users at the same place.
    readme = (CHART / "README.md").read_text()
    assert "oci://ghcr.io/redisqueue/charts/redisqueue-operator" in readme


def test_release_publishes_the_python_dists_with_trusted_publishing() -> None:
    build = "\n".join(s.get("run", "") for s in _steps("python"))
    assert "python -m build" in build and "twine check --strict dist/*" in build
    publish = _workflow()["jobs"]["publish-pypi"]
    assert publish["permissions"] == {"id-token": "write"}
    assert any(
        str(s.get("uses", "")).startswith("pypa/gh-action-pypi-publish@") for s in publish["steps"]
    )
    assert "password" not in str(publish)


def test_ci_runs_the_whole_suite_on_every_push_and_pull_request_and_weekly() -> None:
    workflow = _workflow(CI_WORKFLOW)
    trigger = _triggers(workflow)
    assert {"push", "pull_request", "schedule"} <= set(trigger)
    assert trigger["push"] is None and trigger["pull_request"] is None  # every branch
    (schedule,) = trigger["schedule"]
    *_, day, month, weekday = schedule["cron"].split()
    assert (day, month) == ("*", "*") and weekday.isdigit(), "once a week"
    assert workflow["permissions"] == {"contents": "read"}
    (job,) = workflow["jobs"].values()
    (run,) = [s for s in job["steps"] if ".ci/run" in s.get("run", "")]
    # As root, for the node tests, with the set chosen by the matrix.
    assert run["run"].startswith("sudo ") and run["run"].endswith("bash .ci/run")
    assert "REDISQUEUE_DEPS" in run["run"]
    assert run["env"] == {"REDISQUEUE_DEPS": "${{ matrix.deps }}"}


def test_ci_runs_each_dependency_set_and_only_the_newest_on_the_schedule() -> None:
    (job,) = _workflow(CI_WORKFLOW)["jobs"].values()
    assert job["strategy"]["fail-fast"] is False
    expression = job["strategy"]["matrix"]["deps"]
    sets = re.findall(r"fromJSON\('(\[[^']*\])'\)", expression)
    assert len(sets) == 2, expression
    on_schedule, otherwise = (yaml.safe_load(s) for s in sets)
    assert expression.startswith("${{ github.event_name == 'schedule' && ")
    assert on_schedule == ["newest"]
    assert otherwise == ["lock", "newest", "floor"]
    # The same names tests/run.sh accepts.
    run_sh = (REPO / "tests" / "run.sh").read_text()
    assert "accepted values are lock, newest and floor" in run_sh


def test_ci_keeps_the_go_built_binaries_keyed_by_the_files_that_pin_them() -> None:
    (job,) = _workflow(CI_WORKFLOW)["jobs"].values()
    cache = _uses_in(job, "actions/cache")["with"]
    assert cache["path"] == ".cache"
    patterns = re.findall(r"'([^']+)'", cache["key"])
    pinning = [
        "tests/controlplane/versions.env",
        "tests/node/versions.env",
        "tests/node/build.sh",
        "tests/node/images.sh",
        "terraform/scripts/fmt-check.sh",
        "operator/constraints.txt",
        *(str(p.relative_to(REPO)) for p in REPO.glob("tests/controlplane/*/go.mod")),
        *(str(p.relative_to(REPO)) for p in REPO.glob("tests/tools/*/go.mod")),
        *(str(p.relative_to(REPO)) for p in REPO.glob("tests/node/coredns/go.mod")),
    ]
    for path in pinning:
        assert (REPO / path).exists(), path
        assert any(fnmatch.fnmatch(path, pattern) for pattern in patterns), path
    _uses_in(job, "actions/setup-go")
    assert _uses_in(job, "actions/setup-python")["with"]["python-version"] == "3.11"


def _uses_in(job: dict[str, Any], action: str) -> dict[str, Any]:
    for step in job["steps"]:
        if str(step.get("uses", "")).startswith(action + "@"):
            return dict(step)
    raise AssertionError(f"the job does not use {action}")


# --------------------------------------------------------------------------- build context


def _dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; ``!`` re-includes."""
    ignored = False
    for line in patterns:
        negate = line.startswith("!")
        pattern = line.removeprefix("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        glob = pattern.removeprefix("**/")
        matched = any(fnmatch.fnmatch(p, pattern) for p in prefixes) or (
            pattern.startswith("**/") and any(fnmatch.fnmatch(part, glob) for part in parts)
        )
        if matched:
            ignored = not negate
    return ignored


def test_dockerignore_sends_only_what_the_dockerfile_copies() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    dockerfile = (REPO / "operator" / "Dockerfile").read_text()
    copied = [
        src
        for line in dockerfile.splitlines()
        if line.startswith("COPY ") and "--from" not in line
        for src in line.split()[1:-1]
    ]
    assert copied, "no COPY in the Dockerfile"
    for src in copied:
        assert not _dockerignored(src, patterns), f"{src} is copied but ignored"
        assert (REPO / src).exists(), src
    assert not _dockerignored("operator/redisqueue/controller/cli.py", patterns)
    for private in (".env", ".venv/bin/python", ".cache/prometheus", ".git/config", "tests/x.py"):
        assert _dockerignored(private, patterns), f"{private} would be sent to the builder"
    assert _dockerignored("operator/redisqueue/__pycache__/cli.cpython-311.pyc", patterns)
