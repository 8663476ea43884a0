"""Facts that must be spelled in more than one place (chart, manifests, the Terraform
hand-off, the command line) are checked here against their one source in the package."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import yaml

from redisqueue.controller.cli import build_parser
from redisqueue.controller.resource import identity
from redisqueue.controller.resource.policy import DEFAULT_DENIED_HOSTS
from redisqueue.controller.resource.spec import (
    DEFAULT_HEALTH_INTERVAL_SECONDS,
    DEFAULT_HEALTH_TIMEOUT_SECONDS,
)

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "redisqueue-operator"
MANIFESTS = REPO / "manifests" / "operator"


def _split(hosts: tuple[str, ...]) -> tuple[list[str], list[str]]:
    return [h for h in hosts if "/" in h], [h for h in hosts if "/" not in h]


def _policy_list(variables: list[dict[str, str]], name: str) -> list[str]:
    expression = next(v["expression"] for v in variables if v["name"] == name)
    return re.findall(r"'([^']*)'", expression)


def test_the_default_denied_hosts_are_the_packages_in_the_chart_and_the_manifests() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["operatorPolicy"]["deniedHosts"] == list(DEFAULT_DENIED_HOSTS)
    readme = (CHART / "README.md").read_text()
    row = next(line for line in readme.splitlines() if "`operatorPolicy.deniedHosts`" in line)
    assert all(f'"{host}"' in row for host in DEFAULT_DENIED_HOSTS), row
    docs = list(yaml.safe_load_all((MANIFESTS / "70-operator-policy.yaml").read_text()))
    policy = next(d for d in docs if d and d["kind"] == "ValidatingAdmissionPolicy")
    cidrs, suffixes = _split(DEFAULT_DENIED_HOSTS)
    assert _policy_list(policy["spec"]["variables"], "deniedCIDRs") == cidrs
    assert _policy_list(policy["spec"]["variables"], "deniedSuffixes") == suffixes


def test_the_api_group_and_marks_are_spelled_as_the_package_spells_them() -> None:
    domains = set()
    for path in [*MANIFESTS.glob("*.yaml"), *(CHART / "templates").glob("*.yaml")]:
        domains |= set(re.findall(r"\b([a-z0-9.-]*redisqueue[a-z0-9.-]*\.dev)\b", path.read_text()))
    assert domains <= {identity.DOMAIN}, domains
    crd = yaml.safe_load((REPO / "crds" / "redisqueue.dev_redisqueues.yaml").read_text())
    assert crd["spec"]["group"] == identity.GROUP
    assert crd["metadata"]["name"] == f"{identity.PLURAL}.{identity.GROUP}"


def _handoff() -> ModuleType:
    path = REPO / "terraform" / "scripts" / "elasticache_to_k8s.py"
    spec = importlib.util.spec_from_file_location("elasticache_to_k8s", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_terraform_hand_off_names_the_resource_and_labels_as_the_operator_does() -> None:
    # The script runs without the package installed, so it keeps its own copy.
    handoff = _handoff()
    assert handoff.API_VERSION == identity.API_VERSION
    assert handoff.KIND == identity.KIND
    assert handoff.LABEL_REDISQUEUE == identity.LABEL_REDISQUEUE


def test_dev_mode_probes_on_the_resources_default_interval_and_timeout() -> None:
    args = build_parser().parse_args(["dev"])
    assert args.interval == DEFAULT_HEALTH_INTERVAL_SECONDS
    assert args.timeout == DEFAULT_HEALTH_TIMEOUT_SECONDS
