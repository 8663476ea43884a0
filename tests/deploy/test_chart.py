"""The Helm chart in charts/redisqueue-operator: the same install as manifests/operator.

Pure tests read the chart's files. The others render it with the pinned helm binary, install
it into the local control plane, and check what its ServiceAccount may do with a real token.
"""

from __future__ import annotations

import ast
import json
import re
import secrets
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.kube_controlplane import ControlPlane
from harness.operator_harness import (
    TEST_DENIED_HOSTS,
    OperatorProcess,
    b64,
    token_kubeconfig,
    unb64,
)
from harness.polling import wait_for
from harness.prometheus_fixtures import CHART_ALERTS
from harness.redis_server import RedisServer
from redisqueue.controller.resource.admission import (
    INSTALLER_VARIABLES,
    SHIPPED_FINGERPRINTS,
    fingerprint,
    policy_names,
)

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "redisqueue-operator"
CRD_NAME = "redisqueues.redisqueue.dev"
CRD_FILE = "redisqueue.dev_redisqueues.yaml"
REFRESH_CRD = f"cp crds/{CRD_FILE} charts/redisqueue-operator/crds/"
MANIFESTS = REPO / "manifests" / "operator"
MONITORING_API = "monitoring.coreos.com/v1"

Doc = dict[str, Any]


# --------------------------------------------------------------------------- helpers


#: The operator's arguments after its namespaces: every replica runs, one leads.
LEADER_ARGS = (
    "--standalone",
    "--leader-election",
    "--lease-name",
    "redisqueue-operator",
    "--lease-duration",
    "15",
    "--port",
    "8080",
)


def _load_all(text: str) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def _manifest(kind: str) -> Doc:
    for path in sorted(MANIFESTS.glob("*.yaml")):
        for doc in _load_all(path.read_text()):
            if doc["kind"] == kind:
                return doc
    raise AssertionError(f"no {kind} in {MANIFESTS}")


def render(cp: ControlPlane, *args: str, release: str = "redisqueue-operator") -> list[Doc]:
    """``helm template`` the chart into ``redisqueue-system`` and parse the documents."""
    proc = cp.helm(
        "template", release, str(CHART), "--namespace", "redisqueue-system", "--skip-tests", *args
    )
    return _load_all(proc.stdout)


def only(docs: list[Doc], kind: str) -> Doc:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {[d['metadata']['name'] for d in found]}"
    return found[0]


def kinds(docs: list[Doc]) -> list[str]:
    return sorted(d["kind"] for d in docs)


def container(deployment: Doc) -> Doc:
    (operator,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(operator)


def get_json(cp: ControlPlane, *args: str) -> Doc:
    data: Doc = json.loads(cp.kubectl("get", *args, "-o", "json").stdout)
    return data


def exists(cp: ControlPlane, *args: str) -> bool:
    proc = cp.kubectl("get", *args, "--ignore-not-found", "-o", "name", check=False)
    assert proc.returncode == 0, proc.stderr
    return bool(proc.stdout.strip())


class Release:
    """A helm release of the chart in a test namespace, with a unique (cluster-wide) name."""

    def __init__(self, cp: ControlPlane, namespace: str) -> None:
        self.cp = cp
        self.namespace = namespace
        self.name = f"rq-{secrets.token_hex(3)}"
        # The release name lacks the chart name, so objects are "<release>-<chart>".
        self.fullname = f"{self.name}-redisqueue-operator"

    def install(self, *args: str) -> str:
        proc = self.cp.helm(
            "install", self.name, str(CHART), "--namespace", self.namespace, "--wait=false", *args
        )
        return proc.stdout

    def uninstall(self) -> None:
        self.cp.helm("uninstall", self.name, "--namespace", self.namespace, "--wait", check=False)

    def manifest(self) -> list[Doc]:
        return _load_all(self.cp.helm("get", "manifest", self.name, "-n", self.namespace).stdout)


@pytest.fixture
def release(control_plane: ControlPlane, namespace: str) -> Iterator[Release]:
    rel = Release(control_plane, namespace)
    yield rel
    rel.uninstall()


# --------------------------------------------------------------------------- chart files


def _params() -> list[str]:
    """The names of the ``## @param`` lines of values.yaml, in order."""
    text = (CHART / "values.yaml").read_text()
    return re.findall(r"^\s*## @param (\S+) ", text, flags=re.MULTILINE)


def _leaves(node: Any, prefix: str = "") -> Iterator[str]:
    """Dotted paths of values.yaml's leaves (scalars, lists and empty maps)."""
    if isinstance(node, dict) and node:
        for key, child in node.items():
            yield from _leaves(child, f"{prefix}.{key}" if prefix else key)
    else:
        yield prefix


def _value_at(values: Doc, dotted: str) -> Any:
    node: Any = values
    for part in dotted.split("."):
        node = node[part]
    return node


def _default_cell(value: Any) -> str:
    return f"`{json.dumps(value)}`"


def test_chart_crd_copy_is_the_top_level_crd_byte_for_byte() -> None:
    copies = sorted(p.name for p in (CHART / "crds").iterdir())
    assert copies == [CRD_FILE], "the chart installs exactly the one CRD"
    top = (REPO / "crds" / CRD_FILE).read_bytes()
    assert (CHART / "crds" / CRD_FILE).read_bytes() == top, f"refresh the copy: {REFRESH_CRD}"


UPGRADE_CRD = (
    "helm show crds oci://ghcr.io/redisqueue/charts/redisqueue-operator --version 0.2.0 \\\n"
    "  | kubectl apply --server-side -f -"
)


def test_crd_refresh_is_documented_for_contributors_and_the_upgrade_for_chart_users() -> None:
    assert REFRESH_CRD in (REPO / "CONTRIBUTING.md").read_text()
    readme = (CHART / "README.md").read_text()
    assert UPGRADE_CRD in readme
    notes = (CHART / "templates" / "NOTES.txt").read_text()
    assert "| kubectl apply --server-side -f -" in notes


#: Folders of the repository that a user of the packaged chart does not have.
REPO_ONLY = ("manifests/", "charts/", "docs/", "operator/", "terraform/", "tests/", "bench/")


def test_chart_readme_notes_and_values_name_no_path_outside_the_chart() -> None:
    for path in (CHART / "README.md", CHART / "templates" / "NOTES.txt", CHART / "values.yaml"):
        text = path.read_text()
        # URLs (the runbooks, the OCI reference) are fine: a chart user can open them.
        text = re.sub(r"(https?|oci)://\S+", "", text)
        found = [m.group(0) for m in re.finditer(r"(?<![\w./-])[\w.-]+/[\w./-]*", text)]
        outside = [f for f in found if f.startswith(REPO_ONLY)]
        assert outside == [], f"{path.name} names repository paths: {outside}"
    # The crds/ folder the README speaks of is part of the chart.
    assert (CHART / "crds" / CRD_FILE).is_file()


def test_chart_metadata_pins_versions_and_kubernetes() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "redisqueue-operator"
    assert (chart["version"], chart["appVersion"]) == ("0.1.0", "0.1.0")
    assert chart["kubeVersion"] == ">=1.30.0-0"
    assert chart["description"] and {"redis", "operator"} <= set(chart["keywords"])


def test_chart_metadata_says_where_it_comes_from_for_artifact_hub() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    home = "https://github.com/redisqueue/redisqueue-operator"
    assert chart["home"] == home and chart["sources"] == [home]
    assert chart["maintainers"] and all(m["name"] for m in chart["maintainers"])
    notes = chart["annotations"]
    assert notes["artifacthub.io/license"] == "Apache-2.0"
    assert notes["artifacthub.io/operator"] == "true"
    (crd,) = yaml.safe_load(notes["artifacthub.io/crds"])
    top = yaml.safe_load((REPO / "crds" / CRD_FILE).read_text())
    assert crd["name"] == top["metadata"]["name"] == CRD_NAME
    assert crd["kind"] == top["spec"]["names"]["kind"]
    assert crd["version"] in {v["name"] for v in top["spec"]["versions"]}
    (image,) = yaml.safe_load(notes["artifacthub.io/images"])
    values = yaml.safe_load((CHART / "values.yaml").read_text())["image"]
    expected = f"{values['registry']}/{values['repository']}:{chart['appVersion']}"
    assert image["image"] == expected
    links = {link["name"]: link["url"] for link in yaml.safe_load(notes["artifacthub.io/links"])}
    assert links["Runbooks"].endswith("/docs/runbooks")
    assert (REPO / "docs" / "runbooks").is_dir() and (REPO / "CHANGELOG.md").is_file()


def test_helmignore_keeps_editor_and_packaging_leftovers_out() -> None:
    patterns = (CHART / ".helmignore").read_text().split()
    assert {".git/", "*.tgz", "__pycache__/", "*.swp"} <= set(patterns)


def test_every_value_is_documented_once_with_a_param_line() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    params = _params()
    assert len(params) == len(set(params)), "a value is documented twice"
    for param in params:
        _value_at(values, param)  # KeyError: a @param for a value that does not exist
    undocumented = [
        leaf
        for leaf in _leaves(values)
        if not any(leaf == p or leaf.startswith(p + ".") for p in params)
    ]
    assert undocumented == []


def test_schema_types_every_documented_value_and_closes_the_top_level() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["additionalProperties"] is False
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(schema["properties"]) == set(values), "schema and values.yaml disagree on keys"
    for param in _params():
        node = schema
        for part in param.split("."):
            assert part in node.get("properties", {}), f"{param}: no schema for {part!r}"
            node = node["properties"][part]
        assert "type" in node or "const" in node or "enum" in node, f"{param} is untyped"


def test_readme_values_table_lists_every_param_with_its_default() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    rows = re.findall(
        r"^\| `([^`]+)` \| (.+?) \| (.+?) \|$",
        (CHART / "README.md").read_text().split("\n## Values\n", 1)[1],
        flags=re.MULTILINE,
    )
    table = {name: default for name, _description, default in rows}
    assert sorted(table) == sorted(_params()), "README table and values.yaml differ"
    for name, default in table.items():
        assert default == _default_cell(_value_at(values, name)), name


# --------------------------------------------------------------------------- rendering


def test_helm_lint_strict_passes(control_plane: ControlPlane) -> None:
    proc = control_plane.helm("lint", "--strict", str(CHART))
    assert "1 chart(s) linted, 0 chart(s) failed" in proc.stdout


def test_helm_lint_strict_passes_with_every_optional_object(control_plane: ControlPlane) -> None:
    control_plane.helm(
        "lint",
        "--strict",
        str(CHART),
        "--set",
        "networkPolicy.enabled=true,metrics.serviceMonitor.enabled=true",
        "--set",
        "metrics.prometheusRule.enabled=true,metrics.prometheusRule.depthGrowing.enabled=true",
        "--set",
        "watchNamespaces={a,b},grafanaDashboard.enabled=true",
    )


#: The kinds of a default render, sorted: the objects of the plain install.
PLAIN_INSTALL_KINDS = [
    "ClusterRole",
    "ClusterRoleBinding",
    "Deployment",
    "PodDisruptionBudget",
    "Role",
    "RoleBinding",
    "Service",
    "ServiceAccount",
    *["ValidatingAdmissionPolicy"] * 5,
    *["ValidatingAdmissionPolicyBinding"] * 5,
]


def test_default_render_is_the_plain_install_and_nothing_else(control_plane: ControlPlane) -> None:
    docs = render(control_plane)
    assert kinds(docs) == PLAIN_INSTALL_KINDS
    # Release "redisqueue-operator" gives the same names as the plain manifests.
    assert {d["metadata"]["name"] for d in docs} == {
        "redisqueue-operator",
        "redisqueue-operator-leader-election",
        "redisqueue-operator-author-permissions",
        "redisqueue-operator-author-provision",
        "redisqueue-operator-object-shapes",
        "redisqueue-operator-restarts",
        "redisqueue-operator-policy",
    }
    assert only(docs, "Role")["rules"] == _manifest("Role")["rules"]
    budget = only(docs, "PodDisruptionBudget")["spec"]
    assert budget["maxUnavailable"] == _manifest("PodDisruptionBudget")["spec"]["maxUnavailable"]
    assert budget["selector"] == only(docs, "Deployment")["spec"]["selector"]


def _policy(path: Path) -> dict[str, Doc]:
    return {d["kind"]: d for d in _load_all(path.read_text())}


def _policies(path: Path) -> dict[tuple[str, str], Doc]:
    return {(d["kind"], d["metadata"]["name"]): d for d in _load_all(path.read_text())}


def test_admission_policies_are_the_plain_ones_for_the_releases_service_account(
    control_plane: ControlPlane,
) -> None:
    docs = render(control_plane, release="acme")
    rendered = {(d["kind"], d["metadata"]["name"]): d for d in docs if "Admission" in d["kind"]}
    author = _policies(REPO / "crds" / "redisqueue.dev_admission-policy.yaml")
    shapes = _policy(REPO / "manifests" / "operator" / "60-operator-admission-policy.yaml")
    name = "acme-redisqueue-operator"
    for role in ("author-permissions", "author-provision"):
        for kind in ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"):
            got = rendered[(kind, f"{name}-{role}")]["spec"]
            want = author[(kind, f"redisqueue-{role}")]["spec"]
            if kind.endswith("Binding"):
                want = {**want, "policyName": f"{name}-{role}"}
            assert got == want
    restarts = _policy(REPO / "manifests" / "operator" / "65-operator-restart-policy.yaml")
    for suffix, plain_file in (("object-shapes", shapes), ("restarts", restarts)):
        got = rendered[("ValidatingAdmissionPolicy", f"{name}-{suffix}")]["spec"]
        plain = json.dumps(plain_file["ValidatingAdmissionPolicy"]["spec"]).replace(
            "system:serviceaccount:redisqueue-system:redisqueue-operator",
            f"system:serviceaccount:redisqueue-system:{name}",
        )
        assert got == json.loads(plain), suffix
        binding = rendered[("ValidatingAdmissionPolicyBinding", f"{name}-{suffix}")]["spec"]
        assert binding == {"policyName": f"{name}-{suffix}", "validationActions": ["Deny"]}

    # The operator policy: the chart's default lists are the plain file's.
    got = rendered[("ValidatingAdmissionPolicy", f"{name}-policy")]["spec"]
    want = _policy(REPO / "manifests" / "operator" / "70-operator-policy.yaml")
    want_spec = want["ValidatingAdmissionPolicy"]["spec"]
    lists = INSTALLER_VARIABLES
    for variable in want_spec["variables"]:
        if variable["name"] in lists:
            variable["expression"] = ast.literal_eval(variable["expression"])
    for variable in got["variables"]:
        if variable["name"] in lists:
            variable["expression"] = json.loads(variable["expression"])
    assert got == want_spec
    deployment = container(only(docs, "Deployment"))
    env = {e["name"]: e.get("value") for e in deployment["env"]}
    denied = [v for v in want_spec["variables"] if v["name"].startswith("denied")]
    assert sorted(env["REDISQUEUE_DENIED_HOSTS"].split(",")) == sorted(
        denied[0]["expression"] + denied[1]["expression"]
    )
    assert env["REDISQUEUE_ALLOWED_HOSTS"] == "" and env["REDISQUEUE_ALLOWED_IMAGES"] == ""
    # The operator checks the release's five policies (fail closed) under their names here.
    assert policy_names(env["REDISQUEUE_ADMISSION_POLICIES"]) == {
        "author-permissions": f"{name}-author-permissions",
        "author-provision": f"{name}-author-provision",
        "object-shapes": f"{name}-object-shapes",
        "operator-restarts": f"{name}-restarts",
        "operator-policy": f"{name}-policy",
    }
    assert env["REDISQUEUE_REQUIRE_ADMISSION_POLICIES"] == "true"
    # ... and what it finds there is what it ships (the fingerprints of the shipped files).
    for role, suffix in (
        ("author-permissions", "author-permissions"),
        ("author-provision", "author-provision"),
        ("object-shapes", "object-shapes"),
        ("operator-restarts", "restarts"),
        ("operator-policy", "policy"),
    ):
        spec = rendered[("ValidatingAdmissionPolicy", f"{name}-{suffix}")]["spec"]
        assert fingerprint(spec) == SHIPPED_FINGERPRINTS[role], role

    switches = (
        "admissionPolicies.authorPermissions=false,admissionPolicies.operatorObjectShapes=false,"
        "admissionPolicies.operatorPolicy=false"
    )
    # Turning a policy off while the operator requires them all is refused, with the way out.
    refused = control_plane.helm("template", "rq", str(CHART), "--set", switches, check=False)
    assert refused.returncode != 0 and "admissionPolicies.required=false" in refused.stderr
    off = render(control_plane, "--set", switches, "--set", "admissionPolicies.required=false")
    assert not [d for d in off if "Admission" in d["kind"]]
    env = {e["name"]: e.get("value") for e in container(only(off, "Deployment"))["env"]}
    assert env["REDISQUEUE_REQUIRE_ADMISSION_POLICIES"] == "false"


def _without_names(rules: list[Doc]) -> list[Doc]:
    # The admission policies are read by name: the chart's carry the release's name.
    return [{k: v for k, v in rule.items() if k != "resourceNames"} for rule in rules]


def test_clusterrole_rules_equal_the_plain_manifest_rules(control_plane: ControlPlane) -> None:
    rendered = only(render(control_plane), "ClusterRole")
    assert _without_names(rendered["rules"]) == _without_names(_manifest("ClusterRole")["rules"])
    (named,) = [r for r in rendered["rules"] if r.get("resourceNames")]
    assert named["resourceNames"] == [
        "redisqueue-operator-author-permissions",
        "redisqueue-operator-author-provision",
        "redisqueue-operator-object-shapes",
        "redisqueue-operator-restarts",
        "redisqueue-operator-policy",
    ]


def test_deployment_matches_the_plain_manifest_and_is_locked_down(
    control_plane: ControlPlane,
) -> None:
    docs = render(control_plane)
    deployment = only(docs, "Deployment")
    plain = _manifest("Deployment")
    pod, plain_pod = deployment["spec"]["template"]["spec"], plain["spec"]["template"]["spec"]
    operator, plain_operator = container(deployment), container(plain)

    assert deployment["spec"]["replicas"] == plain["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"] == plain["spec"]["strategy"]
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert operator["args"] == [
        "operator",
        "--all-namespaces",
        *LEADER_ARGS,
    ]
    assert operator["args"] == plain_operator["args"]
    assert operator["command"] == plain_operator["command"] == ["redisqueue"]
    assert operator["image"] == plain_operator["image"]
    assert operator["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert operator["resources"] == plain_operator["resources"]
    assert operator["securityContext"] == plain_operator["securityContext"] | {
        "runAsUser": 10001,
        "runAsGroup": 10001,
    }
    assert operator["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert operator["securityContext"]["readOnlyRootFilesystem"] is True
    assert operator["securityContext"]["allowPrivilegeEscalation"] is False
    assert pod["securityContext"] == plain_pod["securityContext"]
    assert operator["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert operator["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert operator["volumeMounts"] == plain_operator["volumeMounts"]
    assert pod["volumes"] == plain_pod["volumes"]
    assert pod["serviceAccountName"] == only(docs, "ServiceAccount")["metadata"]["name"]
    assert pod["enableServiceLinks"] is False

    # The Service selects the pod and names its port for ServiceMonitors.
    service = only(docs, "Service")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    assert service["spec"]["ports"] == [
        {"name": "http-metrics", "port": 8080, "targetPort": "http", "protocol": "TCP"}
    ]


def test_values_reach_the_deployment(control_plane: ControlPlane, tmp_path: Path) -> None:
    values: Doc = {
        "image": {
            "registry": "registry.example",
            "repository": "team/rq",
            "tag": "1.2.3",
            "pullSecrets": ["regcred"],
        },
        "logLevel": "DEBUG",
        "logFormat": "json",
        "extraEnv": [{"name": "TZ", "value": "UTC"}],
        "podAnnotations": {"example.com/scrape": "yes"},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
        "priorityClassName": "system-cluster-critical",
        "containerPorts": {"http": 9090},
    }
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    proc = control_plane.helm("template", "rq", str(CHART), "--values", str(values_file))
    deployment = only(_load_all(proc.stdout), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    operator = container(deployment)
    assert operator["image"] == "registry.example/team/rq:1.2.3"
    assert {"name": "LOG_LEVEL", "value": "DEBUG"} in operator["env"]
    assert {"name": "LOG_FORMAT", "value": "json"} in operator["env"]
    assert {"name": "TZ", "value": "UTC"} in operator["env"]
    assert operator["args"][-2:] == ["--port", "9090"]
    assert operator["ports"][0]["containerPort"] == 9090
    assert deployment["spec"]["template"]["metadata"]["annotations"] == values["podAnnotations"]
    for key in ("nodeSelector", "tolerations", "affinity", "priorityClassName"):
        assert pod[key] == values[key], key
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]


def test_image_digest_wins_over_the_tag(control_plane: ControlPlane) -> None:
    digest = "sha256:" + "ab" * 32
    deployment = only(render(control_plane, "--set", f"image.digest={digest}"), "Deployment")
    assert container(deployment)["image"] == f"ghcr.io/redisqueue/redisqueue-operator@{digest}"


def test_watch_namespaces_pass_namespace_args_and_bind_rbac_only_there(
    control_plane: ControlPlane,
) -> None:
    docs = render(control_plane, "--set", "watchNamespaces={marketplace,analytics}")
    args = container(only(docs, "Deployment"))["args"]
    assert args == [
        "operator",
        "--namespace",
        "marketplace",
        "--namespace",
        "analytics",
        *LEADER_ARGS,
    ]
    bindings = [
        d
        for d in docs
        if d["kind"] == "RoleBinding" and d["roleRef"]["name"] == "redisqueue-operator"
    ]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["analytics", "marketplace"]
    assert {(b["roleRef"]["kind"], b["roleRef"]["name"]) for b in bindings} == {
        ("Role", "redisqueue-operator")
    }
    roles = [
        d for d in docs if d["kind"] == "Role" and d["metadata"]["name"] == "redisqueue-operator"
    ]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["analytics", "marketplace"]
    # The Lease lives in the release namespace, with a Role of its own.
    (lease_role,) = [d for d in docs if d["metadata"]["name"].endswith("-leader-election")][:1]
    assert lease_role["metadata"]["namespace"] == "redisqueue-system"
    # No ClusterRole carries the namespaced rules (Secrets, StatefulSets, ...).
    assert [d["metadata"]["name"] for d in docs if d["kind"] == "ClusterRole"] == [
        "redisqueue-operator-cluster"
    ]
    # Only the cluster-scoped reads are granted cluster-wide.
    (cluster_binding,) = [d for d in docs if d["kind"] == "ClusterRoleBinding"]
    assert cluster_binding["roleRef"]["name"] == "redisqueue-operator-cluster"
    cluster_role = next(
        d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"].endswith("-cluster")
    )
    verbs = {
        (r, v) for rule in cluster_role["rules"] for r in rule["resources"] for v in rule["verbs"]
    }
    assert verbs == {
        ("namespaces", "list"),
        ("namespaces", "watch"),
        ("customresourcedefinitions", "list"),
        ("customresourcedefinitions", "watch"),
        # Fail closed (by name) and --auth: reads and reviews, nothing namespaced.
        ("validatingadmissionpolicies", "get"),
        ("validatingadmissionpolicybindings", "get"),
        ("tokenreviews", "create"),
        ("subjectaccessreviews", "create"),
    }


@pytest.mark.parametrize(
    ("setting", "field", "reason"),
    [
        ("replicaCount=-1", "/replicaCount", "minimum"),
        ("leaderElection.enabled=false,replicaCount=2", "/replicaCount", "maximum"),
        ("image.pullPolicy=Sometimes", "/image/pullPolicy", "Always"),
        ("logLevel=LOUD", "/logLevel", "DEBUG"),
        ("service.port=0", "/service/port", "minimum"),
        ("metrics.serviceMonitor.interval=soon", "/metrics/serviceMonitor/interval", "pattern"),
        ("watchNamespaces={Not_A_Name}", "/watchNamespaces/0", "pattern"),
        ("replicas=1", "replicas", "additional properties"),
        ("image.tags=latest", "/image", "additional properties"),
    ],
)
def test_schema_rejects_a_bad_value_naming_the_field(
    control_plane: ControlPlane, setting: str, field: str, reason: str
) -> None:
    proc = control_plane.helm("template", "rq", str(CHART), "--set", setting, check=False)
    assert proc.returncode != 0, proc.stdout
    assert "values don't meet the specifications of the schema" in proc.stderr
    assert field in proc.stderr and reason in proc.stderr, proc.stderr


def test_monitoring_objects_are_skipped_without_the_monitoring_api(
    control_plane: ControlPlane,
) -> None:
    docs = render(
        control_plane,
        "--set",
        "metrics.serviceMonitor.enabled=true,metrics.prometheusRule.enabled=true",
    )
    assert "ServiceMonitor" not in kinds(docs) and "PrometheusRule" not in kinds(docs)


def test_servicemonitor_scrapes_the_metrics_port_keeping_the_metrics_labels(
    control_plane: ControlPlane,
) -> None:
    docs = render(
        control_plane,
        "--api-versions",
        MONITORING_API,
        "--set",
        "metrics.serviceMonitor.enabled=true,metrics.serviceMonitor.interval=15s",
        "--set",
        "metrics.serviceMonitor.labels.release=kube-prometheus-stack",
    )
    monitor = only(docs, "ServiceMonitor")
    service = only(docs, "Service")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["redisqueue-system"]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"] == "http-metrics"
    assert endpoint["path"] == "/metrics"
    assert (endpoint["interval"], endpoint["scrapeTimeout"]) == ("15s", "10s")
    # redisqueue_up{namespace=...} names the RedisQueue's namespace, not the operator's.
    assert endpoint["honorLabels"] is True


def test_prometheusrule_alerts_on_the_operator_metrics(control_plane: ControlPlane) -> None:
    metric_names = {
        "redisqueue_up",
        "redisqueue_ping_duration_seconds_bucket",
        "redisqueue_reconcile_total",
        "redisqueue_queue_depth",
        "redisqueue_last_probe_timestamp_seconds",
        "redisqueue_operator_leader",
    }
    base = render(
        control_plane,
        "--api-versions",
        MONITORING_API,
        "--set",
        "metrics.prometheusRule.enabled=true",
    )
    (group,) = only(base, "PrometheusRule")["spec"]["groups"]
    alerts = {rule["alert"]: rule for rule in group["rules"]}
    assert set(alerts) == CHART_ALERTS
    down = " ".join(alerts["RedisQueueDown"]["expr"].split())
    assert down.startswith("max by (namespace, name) ( redisqueue_up and"), down
    assert alerts["RedisQueueDown"]["for"] == "2m"
    slow = " ".join(alerts["RedisQueueSlowPing"]["expr"].split())
    assert slow.startswith("histogram_quantile(0.99,")
    assert "rate(redisqueue_ping_duration_seconds_bucket[5m])" in slow
    assert slow.endswith("> 0.05")
    errors = alerts["RedisQueueOperatorReconcileErrors"]["expr"]
    assert 'rate(redisqueue_reconcile_total{outcome="error"}[10m])' in errors
    for rule in group["rules"]:
        assert rule["labels"]["severity"] in {"critical", "warning"}
        assert rule["annotations"]["summary"]
        used = set(re.findall(r"redisqueue_[a-z_]+", rule["expr"]))
        assert used <= metric_names, used - metric_names

    tuned = render(
        control_plane,
        "--api-versions",
        MONITORING_API,
        "--set",
        "metrics.prometheusRule.enabled=true",
        # --set would pass 0.2 as a string, which the schema refuses.
        "--set-json",
        "metrics.prometheusRule.slowPingThresholdSeconds=0.2",
        "--set",
        "metrics.prometheusRule.depthGrowing.enabled=true,"
        "metrics.prometheusRule.depthGrowing.minDepth=50",
    )
    (group,) = only(tuned, "PrometheusRule")["spec"]["groups"]
    alerts = {rule["alert"]: rule for rule in group["rules"]}
    assert alerts["RedisQueueSlowPing"]["expr"].strip().endswith("> 0.2")
    depth = " ".join(alerts["RedisQueueDepthGrowing"]["expr"].split())
    assert depth == (
        "max by (namespace, name, key, type) (redisqueue_queue_depth) > 50 and "
        "max by (namespace, name, key, type) (deriv(redisqueue_queue_depth[30m])) > 0"
    )


def test_networkpolicy_allows_api_server_dns_redis_out_and_metrics_in(
    control_plane: ControlPlane,
) -> None:
    assert "NetworkPolicy" not in kinds(render(control_plane))
    docs = render(
        control_plane,
        "--set",
        "networkPolicy.enabled=true,networkPolicy.redisPorts={6379,6380}",
        "--set",
        "networkPolicy.ingress.namespaceSelector.matchLabels.kubernetes\\.io/metadata\\.name"
        "=monitoring",
    )
    policy = only(docs, "NetworkPolicy")
    spec = policy["spec"]
    assert (
        spec["podSelector"]["matchLabels"]
        == only(docs, "Deployment")["spec"]["selector"]["matchLabels"]
    )
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    egress_ports = {(p["protocol"], p["port"]) for rule in spec["egress"] for p in rule["ports"]}
    assert egress_ports == {
        ("TCP", 443),
        ("TCP", 6443),
        ("UDP", 53),
        ("TCP", 53),
        ("TCP", 6379),
        ("TCP", 6380),
    }
    (ingress,) = spec["ingress"]
    assert ingress["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert ingress["from"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
            "podSelector": {},
        }
    ]


# --------------------------------------------------------------------------- installed


def test_install_creates_the_crd_and_a_locked_down_operator_then_uninstall_keeps_the_crd(
    control_plane: ControlPlane, namespace: str, release: Release
) -> None:
    cp = control_plane
    cp.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    notes = release.install(
        "--set", "metrics.serviceMonitor.enabled=true,metrics.prometheusRule.enabled=true"
    )
    cp.wait_established(CRD_NAME)

    # NOTES tell the user what to do next, and why no ServiceMonitor was made.
    assert "kubectl get rq" in notes
    assert f"port-forward service/{release.fullname} 8080:8080" in notes
    assert "curl http://localhost:8080/api/health/redis" in notes
    assert "no ServiceMonitor was created" in notes

    # The cluster has no monitoring.coreos.com API: the monitoring objects were skipped.
    assert kinds(release.manifest()) == PLAIN_INSTALL_KINDS

    name = release.fullname
    deployment = get_json(cp, "deployment", name, "-n", namespace)
    operator = container(deployment)
    security = operator["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] == 10001
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == name
    assert exists(cp, "serviceaccount", name, "-n", namespace)
    assert exists(cp, "service", name, "-n", namespace)
    assert exists(cp, "clusterrole", name)
    binding = get_json(cp, "clusterrolebinding", name)
    assert binding["roleRef"]["name"] == name
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]

    # There is no kubelet here, so prove the pod would be admitted under the "restricted" Pod
    # Security Standard by creating it from the Deployment's template, server-side dry run.
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "admission-check", "namespace": namespace},
        "spec": deployment["spec"]["template"]["spec"],
    }
    admitted = cp.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(pod))
    assert "created (server dry run)" in admitted.stdout, admitted.stderr
    assert "violate" not in admitted.stderr

    release.uninstall()
    leftovers: list[tuple[str, ...]] = [
        ("deployment", name, "-n", namespace),
        ("serviceaccount", name, "-n", namespace),
        ("service", name, "-n", namespace),
        ("clusterrole", name),
        ("clusterrolebinding", name),
    ]
    wait_for(
        lambda: not any(exists(cp, *args) for args in leftovers),
        timeout=30,
        what="the release's objects to be deleted",
    )
    # Helm never deletes CRDs it installed from crds/: RedisQueues survive an uninstall.
    assert exists(cp, "crd", CRD_NAME)


def _can_i(cp: ControlPlane, kubeconfig: Path, *args: str) -> bool:
    proc = cp.run("kubectl", f"--kubeconfig={kubeconfig}", "auth", "can-i", *args, check=False)
    answer = proc.stdout.strip()
    assert answer in {"yes", "no"}, (args, proc.stdout, proc.stderr)
    return answer == "yes"


ALLOWED_EVERYWHERE: list[tuple[str, ...]] = [
    ("watch", "redisqueues.redisqueue.dev"),
    ("patch", "redisqueues.redisqueue.dev"),
    ("patch", "redisqueues.redisqueue.dev", "--subresource=status"),
    ("update", "redisqueues.redisqueue.dev", "--subresource=finalizers"),
    ("create", "secrets"),
    ("patch", "secrets"),
    ("delete", "secrets"),
    ("watch", "secrets"),  # the referenced ones are followed, not polled
    ("create", "services"),
    ("create", "statefulsets.apps"),
    ("patch", "statefulsets.apps"),
    ("get", "deployments.apps"),  # restart opt-in: follow the rollout
    ("patch", "deployments.apps"),  # restart opt-in: the restart annotation only
    ("patch", "persistentvolumeclaims"),
    ("delete", "persistentvolumeclaims"),
    ("create", "events"),
    ("create", "events.events.k8s.io"),
]
DENIED_EVERYWHERE: list[tuple[str, ...]] = [
    ("update", "secrets"),
    ("update", "redisqueues.redisqueue.dev"),
    ("create", "redisqueues.redisqueue.dev"),
    ("delete", "redisqueues.redisqueue.dev"),
    ("delete", "statefulsets.apps"),
    ("delete", "services"),
    ("create", "persistentvolumeclaims"),
    ("get", "configmaps"),
    ("create", "pods"),
    ("create", "pods", "--subresource=exec"),
    ("create", "deployments.apps"),
    ("update", "deployments.apps"),
    ("delete", "deployments.apps"),
    ("list", "deployments.apps"),
    ("create", "rolebindings.rbac.authorization.k8s.io"),
    ("create", "serviceaccounts", "--subresource=token"),
    ("impersonate", "serviceaccounts"),
]
DENIED_CLUSTER: list[tuple[str, ...]] = [
    ("create", "clusterroles.rbac.authorization.k8s.io"),
    ("bind", "clusterroles.rbac.authorization.k8s.io"),
    ("escalate", "clusterroles.rbac.authorization.k8s.io"),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
    ("get", "nodes"),
    ("list", "nodes"),
    ("create", "namespaces"),
    ("delete", "namespaces"),
    ("get", "namespaces"),
    ("create", "customresourcedefinitions.apiextensions.k8s.io"),
    ("update", "customresourcedefinitions.apiextensions.k8s.io"),
    ("delete", "customresourcedefinitions.apiextensions.k8s.io"),
]


Permission = tuple[str, str, str]  # (apiGroup, resource, verb)


def _rule_permissions(rules: list[Doc]) -> set[Permission]:
    return {
        (group, resource, verb)
        for rule in rules
        if not rule.get("resourceNames")
        for group in rule.get("apiGroups", [])
        for resource in rule.get("resources", [])
        for verb in rule["verbs"]
    }


def _granted(cp: ControlPlane, kubeconfig: Path, namespace: str) -> set[Permission]:
    """Everything the kubeconfig's user may do in ``namespace`` (a SelfSubjectRulesReview)."""
    review = {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SelfSubjectRulesReview",
        "spec": {"namespace": namespace},
    }
    proc = cp.run(
        "kubectl",
        f"--kubeconfig={kubeconfig}",
        "create",
        # Client-side validation would list CRDs, which the baseline user may not.
        "--validate=false",
        "-o",
        "json",
        "-f",
        "-",
        input=json.dumps(review),
    )
    status = json.loads(proc.stdout)["status"]
    assert not status.get("incomplete"), status
    return _rule_permissions(status["resourceRules"])


def test_service_account_token_can_do_what_the_operator_needs_and_no_more(
    control_plane: ControlPlane, namespace: str, release: Release, tmp_path: Path
) -> None:
    cp = control_plane
    release.install()
    kubeconfig = token_kubeconfig(cp, namespace, release.fullname, tmp_path)
    other = "default"  # any namespace: the default install serves them all

    who = cp.run("kubectl", f"--kubeconfig={kubeconfig}", "auth", "whoami", "-o", "json").stdout
    username = json.loads(who)["status"]["userInfo"]["username"]
    assert username == f"system:serviceaccount:{namespace}:{release.fullname}"

    # Exactly the plain manifest's rules on top of what every authenticated user has.
    cp.kubectl("create", "serviceaccount", "nobody", "-n", namespace)
    baseline = _granted(cp, token_kubeconfig(cp, namespace, "nobody", tmp_path), other)
    extra = _granted(cp, kubeconfig, other) - baseline
    assert extra == _rule_permissions(_manifest("ClusterRole")["rules"])

    for check in ALLOWED_EVERYWHERE:
        assert _can_i(cp, kubeconfig, *check, "--all-namespaces"), check
        assert _can_i(cp, kubeconfig, *check, "-n", other), check
    for check in DENIED_EVERYWHERE:
        assert not _can_i(cp, kubeconfig, *check, "-n", other), check
        assert not _can_i(cp, kubeconfig, *check, "-n", namespace), check
    for check in (
        ("list", "namespaces"),
        ("watch", "namespaces"),
        ("list", "customresourcedefinitions.apiextensions.k8s.io"),
        ("watch", "customresourcedefinitions.apiextensions.k8s.io"),
    ):
        assert _can_i(cp, kubeconfig, *check), check
    for check in DENIED_CLUSTER:
        assert not _can_i(cp, kubeconfig, *check), check

    # The token really works against the API, not only in access reviews.
    cp.run("kubectl", f"--kubeconfig={kubeconfig}", "get", "redisqueues", "-A")
    forbidden = cp.run(
        "kubectl", f"--kubeconfig={kubeconfig}", "get", "configmaps", "-n", other, check=False
    )
    assert forbidden.returncode != 0 and "forbidden" in forbidden.stderr.lower()


def test_service_account_of_a_namespaced_install_reaches_only_its_namespaces(
    control_plane: ControlPlane, namespace: str, release: Release, tmp_path: Path
) -> None:
    cp = control_plane
    watched = f"{namespace[:50]}-w"
    cp.kubectl("create", "namespace", watched)
    try:
        release.install("--set", f"watchNamespaces={{{watched}}}")
        kubeconfig = token_kubeconfig(cp, namespace, release.fullname, tmp_path)
        cp.kubectl("create", "serviceaccount", "nobody", "-n", namespace)
        baseline = _granted(cp, token_kubeconfig(cp, namespace, "nobody", tmp_path), "default")
        rules = _rule_permissions(_manifest("ClusterRole")["rules"])
        assert _granted(cp, kubeconfig, watched) - baseline == rules
        assert _granted(cp, kubeconfig, "default") - baseline == {
            ("", "namespaces", "list"),
            ("", "namespaces", "watch"),
            ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
            ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
            ("authentication.k8s.io", "tokenreviews", "create"),
            ("authorization.k8s.io", "subjectaccessreviews", "create"),
        }
        for check in ALLOWED_EVERYWHERE:
            assert _can_i(cp, kubeconfig, *check, "-n", watched), check
            assert not _can_i(cp, kubeconfig, *check, "-n", "default"), check
            assert not _can_i(cp, kubeconfig, *check, "--all-namespaces"), check
        # What the framework needs cluster-wide, and nothing else there.
        assert _can_i(cp, kubeconfig, "watch", "customresourcedefinitions.apiextensions.k8s.io")
        assert _can_i(cp, kubeconfig, "list", "namespaces")
        for check in DENIED_CLUSTER:
            assert not _can_i(cp, kubeconfig, *check), check
        assert exists(cp, "rolebinding", release.fullname, "-n", watched)
    finally:
        release.uninstall()
        cp.kubectl("delete", "namespace", watched, "--wait=false", check=False)


def test_operator_runs_with_only_the_chart_service_account_permissions(
    control_plane: ControlPlane,
    namespace: str,
    release: Release,
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    """The real operator, authenticated as the chart's ServiceAccount, serves a RedisQueue."""
    cp = control_plane
    assert redis_server.password
    # No kubelet runs the Deployment's pod here; the operator runs as a local process instead,
    # with the Deployment's environment for its admission policies. Loopback, where the test's
    # Redis listens, is left out of the denied hosts (as an installer may).
    denied = json.dumps(TEST_DENIED_HOSTS.split(","))
    release.install("--set", "replicaCount=0", "--set-json", f"operatorPolicy.deniedHosts={denied}")
    deployment = next(d for d in release.manifest() if d["kind"] == "Deployment")
    env = {e["name"]: e.get("value") for e in container(deployment)["env"]}
    kubeconfig = token_kubeconfig(cp, namespace, release.fullname, tmp_path)
    names = {"REDISQUEUE_ADMISSION_POLICIES": env["REDISQUEUE_ADMISSION_POLICIES"]}
    operator = OperatorProcess(kubeconfig, tmp_path, environ=names).start()
    try:
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "redis-auth", "namespace": namespace},
            "data": {"password": b64(redis_server.password)},
        }
        queue = {
            "apiVersion": "redisqueue.dev/v1alpha1",
            "kind": "RedisQueue",
            "metadata": {"name": "jobs", "namespace": namespace},
            "spec": {
                "redis": {"external": {"host": redis_server.host, "port": redis_server.port}},
                "auth": {"secretRef": {"name": "redis-auth", "key": "password"}},
                "inject": [{"secretName": "app-redis"}],
                "healthCheck": {"intervalSeconds": 1, "timeoutSeconds": 0.5},
            },
        }
        cp.kubectl(
            "create",
            "-f",
            "-",
            input=json.dumps({"kind": "List", "apiVersion": "v1", "items": [secret, queue]}),
        )

        def ready() -> bool:
            rq = get_json(cp, "redisqueue", "jobs", "-n", namespace)
            conditions = (rq.get("status") or {}).get("conditions", [])
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

        wait_for(ready, timeout=60, what="RedisQueue Ready under the chart's RBAC")
        injected = unb64(get_json(cp, "secret", "app-redis", "-n", namespace)["data"])
        assert injected["REDIS_PORT"] == str(redis_server.port)
        assert operator.health(namespace, "jobs")[0] == 200

        cp.kubectl("delete", "redisqueue", "jobs", "-n", namespace, "--timeout=60s")
        assert "forbidden" not in operator.logs().lower()
    finally:
        operator.stop()


# --------------------------------------------------------------------------- the packaged chart


def test_helm_test_pod_checks_readyz_through_the_service_and_can_be_turned_off(
    control_plane: ControlPlane,
) -> None:
    args = ("template", "rel", str(CHART), "--namespace", "ops")
    docs = _load_all(
        control_plane.helm(*args, "--show-only", "templates/tests/test-readyz.yaml").stdout
    )
    pod = only(docs, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (check,) = pod["spec"]["containers"]
    assert check["args"] == ["http://rel-redisqueue-operator.ops.svc:8080/readyz"]
    assert check["image"] == container(only(render(control_plane), "Deployment"))["image"]
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["automountServiceAccountToken"] is False
    off = control_plane.helm(*args, "--set", "helmTest.enabled=false").stdout
    assert "test-readyz" not in off


def test_packaged_chart_installs_from_its_tgz_and_upgrades_its_crd_from_the_package(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    cp = control_plane
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    cp.helm("package", str(CHART), "--destination", str(tmp_path))
    tgz = tmp_path / f"redisqueue-operator-{chart['version']}.tgz"
    with tarfile.open(tgz) as archive:
        names = set(archive.getnames())
    root = "redisqueue-operator/"
    for wanted in (
        "Chart.yaml",
        "values.yaml",
        "values.schema.json",
        "README.md",
        f"crds/{CRD_FILE}",
        "templates/NOTES.txt",
        "templates/tests/test-readyz.yaml",
        "dashboards/redisqueue-operator.json",
    ):
        assert root + wanted in names, f"{wanted} is not in the package"
    assert not [n for n in names if "__pycache__" in n or n.endswith((".swp", ".tgz"))]

    # Installed from the .tgz alone, as a user who never saw this repository does.
    cp.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    release = f"pkg-{secrets.token_hex(3)}"
    fullname = f"{release}-redisqueue-operator"
    try:
        notes = cp.helm(
            "install", release, str(tgz), "--namespace", namespace, "--wait=false"
        ).stdout
        assert f"helm test {release} -n {namespace}" in notes
        assert "helm show crds redisqueue-operator-VERSION.tgz" in notes
        cp.wait_established(CRD_NAME)
        assert exists(cp, "deployment", fullname, "-n", namespace)

        # The helm test hook is part of the release. No kubelet runs pods here, so prove the
        # API server admits it under the "restricted" Pod Security Standard (server dry run).
        hooks = _load_all(cp.helm("get", "hooks", release, "-n", namespace).stdout)
        pod = only(hooks, "Pod")
        admitted = cp.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(pod))
        assert "created (server dry run)" in admitted.stdout, admitted.stderr
        assert "violate" not in admitted.stderr

        # The documented CRD upgrade: the package's CRD, applied server-side.
        crds = cp.helm("show", "crds", str(tgz)).stdout
        assert yaml.safe_load(crds) == yaml.safe_load((REPO / "crds" / CRD_FILE).read_text())
        applied = cp.kubectl("apply", "--server-side", "-f", "-", input=crds)
        assert f"customresourcedefinition.apiextensions.k8s.io/{CRD_NAME} serverside-applied" in (
            applied.stdout
        )
    finally:
        cp.helm("uninstall", release, "--namespace", namespace, "--wait", check=False)


def test_dashboard_configmap_carries_the_dashboard_for_the_grafana_sidecar(
    control_plane: ControlPlane,
) -> None:
    assert "ConfigMap" not in kinds(render(control_plane)), "the dashboard is opt-in"
    docs = render(
        control_plane,
        "--set",
        "grafanaDashboard.enabled=true,grafanaDashboard.namespace=monitoring",
        "--set",
        "grafanaDashboard.annotations.grafana_folder=Redis",
    )
    configmap = only(docs, "ConfigMap")
    assert configmap["metadata"]["namespace"] == "monitoring"
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["annotations"] == {"grafana_folder": "Redis"}
    (key,) = configmap["data"]
    dashboard = json.loads((CHART / "dashboards" / "redisqueue-operator.json").read_text())
    assert json.loads(configmap["data"][key]) == dashboard
    # Accepted by the API server as it is (server-side dry run).
    configmap["metadata"]["namespace"] = "default"
    admitted = control_plane.kubectl(
        "create", "--dry-run=server", "-f", "-", input=json.dumps(configmap)
    )
    assert "created (server dry run)" in admitted.stdout, admitted.stderr
