"""Terraform for AWS ElastiCache and its hand-off to Kubernetes.

No AWS account and no provider downloads: the .tf files are parsed (python-hcl2) and
checked for the properties production relies on, checkov scans them statically, and
the hand-off script is fed a recorded `terraform output -json`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import hcl2
import pytest
import yaml

from harness.go_tools import refuse_go_builds

REPO = Path(__file__).resolve().parents[2]
TERRAFORM = REPO / "terraform"
MODULE = TERRAFORM / "modules" / "elasticache"
PRODUCTION = TERRAFORM / "environments" / "production"
DEVELOPMENT = TERRAFORM / "environments" / "development"
SHARED = TERRAFORM / "environments" / "shared"
EXAMPLE = MODULE / "examples" / "basic"
ROOTS = (MODULE, PRODUCTION, DEVELOPMENT, EXAMPLE)
ENVIRONMENTS = (PRODUCTION, DEVELOPMENT)
SCRIPT = TERRAFORM / "scripts" / "elasticache_to_k8s.py"
CHECKOV = TERRAFORM / "scripts" / "checkov.sh"
FMT_CHECK = TERRAFORM / "scripts" / "fmt-check.sh"
FIXTURES = REPO / "tests" / "fixtures"
OUTPUT_FIXTURE = FIXTURES / "terraform-output.json"
INSECURE_FIXTURE = FIXTURES / "terraform-insecure"

# A token shaped like the module's (64 letters and digits). Every test that runs the
# script checks that it never shows up on stderr.
TOKEN = "Q7vR2mXk9LpW4sTz8NcY3hJd6FgB1aUe5KoP0iVwMnHqZrStCxLyEbDfGjA2uI9k"
SECRET_ARN = (
    "arn:aws:secretsmanager:eu-central-1:123456789012:secret:"
    "elasticache/marketplace-analysis-prod/auth-token-Q3xT9b"
)
PRIMARY = "master.marketplace-analysis-prod.x7kq2m.euc1.cache.amazonaws.com"


# --- Reading Terraform ----------------------------------------------------------------

_META_KEYS = frozenset(
    {"__is_block__", "__comments__", "__inline_comments__", "__start_line__", "__end_line__"}
)


def _unquote(value: str) -> str:
    # python-hcl2 >= 7 keeps the quotes of string literals and block labels.
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {_unquote(k): _plain(v) for k, v in node.items() if k not in _META_KEYS}
    if isinstance(node, list):
        return [_plain(item) for item in node]
    if isinstance(node, str):
        return _unquote(node)
    return node


def load_hcl(path: Path) -> dict[str, Any]:
    """Parse one .tf file into plain dicts, lists and unquoted strings."""
    with path.open(encoding="utf-8") as handle:
        options = getattr(hcl2, "SerializationOptions", None)
        if options is None:
            return dict(_plain(hcl2.load(handle)))
        return dict(_plain(hcl2.load(handle, serialization_options=options(with_comments=False))))


@dataclass
class Config:
    """The blocks of one Terraform root or module directory."""

    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    resources: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    data: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    ephemeral: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    modules: dict[str, dict[str, Any]] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)
    terraform: list[dict[str, Any]] = field(default_factory=list)
    providers: dict[str, dict[str, Any]] = field(default_factory=dict)

    def resource(self, type_: str, name: str) -> dict[str, Any]:
        assert (type_, name) in self.resources, f"missing resource {type_}.{name}"
        return self.resources[(type_, name)]

    def of_type(self, type_: str) -> list[dict[str, Any]]:
        return [body for (kind, _), body in self.resources.items() if kind == type_]


def load_config(directory: Path) -> Config:
    config = Config()
    for path in sorted(directory.glob("*.tf")):
        document = load_hcl(path)
        for block in document.get("variable", []):
            config.variables.update(block)
        for block in document.get("output", []):
            config.outputs.update(block)
        for block in document.get("module", []):
            config.modules.update(block)
        for block in document.get("locals", []):
            config.locals.update(block)
        for block in document.get("provider", []):
            config.providers.update(block)
        config.terraform.extend(document.get("terraform", []))
        for kind, target in (
            ("resource", config.resources),
            ("data", config.data),
            ("ephemeral", config.ephemeral),
        ):
            for block in document.get(kind, []):
                for type_, named in block.items():
                    for name, body in named.items():
                        target[(type_, name)] = body
    return config


def blocks(body: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """The nested blocks called ``name`` of a resource body."""
    value = body.get(name, [])
    return value if isinstance(value, list) else [value]


def dynamic_blocks(body: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [d[name] for d in blocks(body, "dynamic") if name in d]


def tf_files() -> list[Path]:
    return sorted(TERRAFORM.rglob("*.tf"))


@pytest.fixture(scope="module")
def module() -> Config:
    return load_config(MODULE)


@pytest.fixture(scope="module")
def production() -> Config:
    return load_config(PRODUCTION)


def handoff_module() -> ModuleType:
    """The hand-off script, imported from its path (it is not part of a package)."""
    name = "elasticache_to_k8s"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, SCRIPT)
        assert spec is not None and spec.loader is not None
        loaded = importlib.util.module_from_spec(spec)
        sys.modules[name] = loaded  # dataclasses look their module up here
        spec.loader.exec_module(loaded)
    return sys.modules[name]


# --- Structure ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", tf_files(), ids=lambda p: str(p.relative_to(TERRAFORM)))
def test_every_terraform_file_parses(path: Path) -> None:
    assert load_hcl(path), f"{path} is empty"


def test_module_has_the_standard_module_structure() -> None:
    for name in ("main.tf", "variables.tf", "outputs.tf", "versions.tf", "README.md"):
        assert (MODULE / name).is_file(), f"modules/elasticache/{name} is missing"
    for env in ENVIRONMENTS:
        for name in ("main.tf", "variables.tf", "outputs.tf", "versions.tf"):
            assert (env / name).is_file(), f"{env.name}/{name} is missing"
        assert (env / "terraform.tfvars.example").is_file()
        # What both environments share is written once and linked in.
        for name, target in (
            ("versions.tf", "versions.tf"),
            ("providers.tf", "providers.tf"),
            ("shared_variables.tf", "variables.tf"),
            ("outputs.tf", "outputs.tf"),
        ):
            assert (env / name).resolve() == SHARED / target, f"{env.name}/{name}"


@pytest.mark.parametrize("root", ROOTS, ids=lambda p: p.name)
def test_every_variable_has_a_type_and_a_description(root: Path) -> None:
    config = load_config(root)
    assert config.variables
    for name, body in config.variables.items():
        assert body.get("type"), f"{root.name}: variable {name} has no type"
        description = body.get("description", "")
        assert len(description) >= 10, f"{root.name}: variable {name} has no description"


@pytest.mark.parametrize("root", ROOTS, ids=lambda p: p.name)
def test_every_output_has_a_description(root: Path) -> None:
    for name, body in load_config(root).outputs.items():
        assert body.get("description"), f"{root.name}: output {name} has no description"


def test_module_validates_every_constrained_variable(module: Config) -> None:
    constrained = {
        "name",
        "description",
        "engine",
        "engine_version",
        "node_type",
        "replica_count",
        "port",
        "vpc_id",
        "subnet_ids",
        "allowed_security_group_ids",
        "allowed_cidr_blocks",
        "kms_key_arn",
        "kms_key_deletion_window_in_days",
        "auth_token_version",
        "auth_token_update_strategy",
        "auth_token_length",
        "auth_secret_name",
        "auth_secret_recovery_window_in_days",
        "snapshot_retention_limit",
        "snapshot_window",
        "maintenance_window",
        "log_retention_in_days",
        "alarm_topic_arn",
        "alarm_cpu_threshold_percent",
        "alarm_memory_threshold_percent",
        "alarm_evictions_threshold",
        "alarm_connections_threshold",
    }
    for name in sorted(constrained):
        validations = blocks(module.variables[name], "validation")
        assert validations, f"variable {name} has no validation"
        for validation in validations:
            assert validation.get("condition") and validation.get("error_message"), name


def test_required_module_inputs_are_only_what_has_no_safe_default(module: Config) -> None:
    required = {name for name, body in module.variables.items() if "default" not in body}
    assert required == {"name", "node_type", "vpc_id", "subnet_ids"}


def test_engine_is_redis_or_valkey(module: Config) -> None:
    condition = blocks(module.variables["engine"], "validation")[0]["condition"]
    assert '"redis"' in condition and '"valkey"' in condition
    group = module.resource("aws_elasticache_replication_group", "this")
    assert group["engine"] == "${var.engine}"


def test_terraform_and_providers_are_pinned() -> None:
    for root in ROOTS:
        config = load_config(root)
        (settings,) = config.terraform
        assert settings["required_version"] == ">= 1.11", root.name  # write-only arguments
        providers = settings["required_providers"]
        providers = providers[0] if isinstance(providers, list) else providers
        assert providers["aws"]["source"] == "hashicorp/aws"
        assert providers["aws"]["version"].startswith(">= 6.")
        assert providers["random"]["version"] == ">= 3.7"  # ephemeral random_password


# --- Security properties -------------------------------------------------------------------


def test_replication_group_encrypts_in_transit_and_at_rest(module: Config) -> None:
    group = module.resource("aws_elasticache_replication_group", "this")
    assert group["transit_encryption_enabled"] is True
    assert group["transit_encryption_mode"] == "required"
    assert group["at_rest_encryption_enabled"] is True
    assert group["kms_key_id"] == "${local.kms_key_arn}"
    # The customer key is optional but created by default.
    assert module.variables["create_kms_key"]["default"] is True
    key = module.resource("aws_kms_key", "this")
    assert key["enable_key_rotation"] is True


def test_auth_token_reaches_elasticache_only_through_write_only_arguments(
    module: Config,
) -> None:
    group = module.resource("aws_elasticache_replication_group", "this")
    assert "auth_token" not in group
    assert group["auth_token_wo"] == (
        "${ephemeral.aws_secretsmanager_secret_version.auth_token.secret_string}"
    )
    assert group["auth_token_wo_version"] == "${local.auth_token_wo_version}"
    assert group["auth_token_update_strategy"] == "${var.auth_token_update_strategy}"

    version = module.resource("aws_secretsmanager_secret_version", "auth_token")
    assert "secret_string" not in version
    assert version["secret_string_wo"] == "${ephemeral.random_password.auth_token.result}"
    assert version["secret_string_wo_version"] == "${var.auth_token_version}"

    assert ("random_password", "auth_token") in module.ephemeral
    assert module.ephemeral[("random_password", "auth_token")]["special"] is False
    assert ("aws_secretsmanager_secret_version", "auth_token") in module.ephemeral


def test_no_secret_value_is_kept_in_state_or_outputs() -> None:
    for root in ROOTS:
        config = load_config(root)
        kinds = {kind for kind, _ in config.resources}
        assert not kinds & {"random_password", "random_string"}, (
            f"{root.name}: a managed random_* resource would put the token in state"
        )
        assert not {kind for kind, _ in config.data} & {"aws_secretsmanager_secret_version"}, (
            f"{root.name}: a data source would put the token in state; use the ephemeral one"
        )
        for name, body in config.outputs.items():
            value = json.dumps(body["value"])
            assert "secret_string" not in value and "random_password" not in value, name


def test_auth_token_rotation_offers_only_rotate_and_set(module: Config) -> None:
    variable = module.variables["auth_token_update_strategy"]
    assert variable["default"] == "SET"
    condition = blocks(variable, "validation")[0]["condition"]
    assert '"ROTATE"' in condition and '"SET"' in condition and "DELETE" not in condition
    # Both the token generation and the strategy feed the write-only version, so the
    # SET step of a rotation re-sends the stored token.
    expression = module.locals["auth_token_wo_version"]
    assert "var.auth_token_version" in expression and "var.auth_token_update_strategy" in expression


def test_security_group_admits_only_the_given_groups_and_cidr_blocks(module: Config) -> None:
    group = module.resource("aws_security_group", "this")
    assert "ingress" not in group and "egress" not in group, "no inline rules"
    assert not module.of_type("aws_security_group_rule")

    from_groups = module.resource("aws_vpc_security_group_ingress_rule", "from_security_groups")
    assert from_groups["for_each"] == "${var.allowed_security_group_ids}"
    assert from_groups["referenced_security_group_id"] == "${each.value}"

    from_cidrs = module.resource("aws_vpc_security_group_ingress_rule", "from_cidr_blocks")
    assert from_cidrs["for_each"] == "${toset(var.allowed_cidr_blocks)}"
    assert from_cidrs["cidr_ipv4"] == "${each.value}"

    rules = module.of_type("aws_vpc_security_group_ingress_rule") + module.of_type(
        "aws_vpc_security_group_egress_rule"
    )
    for rule in rules:
        assert "cidr_ipv6" not in rule
        assert rule["ip_protocol"] == "tcp"
        assert rule["from_port"] == rule["to_port"] == "${var.port}"
        assert rule.get("description")
    for rule in module.of_type("aws_vpc_security_group_egress_rule"):
        assert rule["referenced_security_group_id"] == "${aws_security_group.this.id}"

    validation = blocks(module.variables["allowed_cidr_blocks"], "validation")[0]
    assert "cidrnetmask" in validation["condition"] and ">= 8" in validation["condition"]


def test_no_terraform_file_opens_anything_to_the_whole_internet() -> None:
    for path in [*tf_files(), *TERRAFORM.rglob("*.tfvars.example")]:
        text = path.read_text(encoding="utf-8")
        assert "0.0.0.0/0" not in text.replace("0.0.0.0/0 is never allowed", ""), path
        assert "::/0" not in text, path


def test_replication_group_uses_its_own_parameter_group(module: Config) -> None:
    group = module.resource("aws_elasticache_replication_group", "this")
    assert group["parameter_group_name"] == "${aws_elasticache_parameter_group.this.name}"
    parameters = module.resource("aws_elasticache_parameter_group", "this")
    assert parameters["family"] == "${local.parameter_group_family}"
    assert "noeviction" in json.dumps(module.locals["parameters"])


def test_replication_group_lives_in_its_subnet_group_and_security_group(module: Config) -> None:
    group = module.resource("aws_elasticache_replication_group", "this")
    assert group["subnet_group_name"] == "${aws_elasticache_subnet_group.this.name}"
    assert group["security_group_ids"] == ["${aws_security_group.this.id}"]


def test_failover_and_multi_az_follow_the_replicas(module: Config, production: Config) -> None:
    group = module.resource("aws_elasticache_replication_group", "this")
    assert group["num_cache_clusters"] == "${local.num_cache_clusters}"
    assert group["automatic_failover_enabled"] == "${local.replicated}"
    assert group["multi_az_enabled"] == "${local.replicated}"
    assert module.locals["replicated"] == "${var.replica_count > 0}"
    replicas = production.variables["replica_count"]
    assert replicas["default"] >= 1
    assert ">= 1" in blocks(replicas, "validation")[0]["condition"]


def test_slow_log_is_delivered_to_cloudwatch_logs(module: Config) -> None:
    group = module.resource("aws_elasticache_replication_group", "this")
    (delivery,) = dynamic_blocks(group, "log_delivery_configuration")
    content = blocks(delivery, "content")[0]
    assert content["destination_type"] == "cloudwatch-logs"
    assert content["log_type"] == "${log_delivery_configuration.key}"
    assert '"slow-log"' in module.locals["log_types"]
    logs = module.resource("aws_cloudwatch_log_group", "this")
    assert logs["retention_in_days"] == "${var.log_retention_in_days}"
    assert logs["kms_key_id"] == "${local.kms_key_arn}"


def test_snapshots_are_kept_and_maintenance_is_scheduled(
    module: Config, production: Config
) -> None:
    group = module.resource("aws_elasticache_replication_group", "this")
    assert group["snapshot_retention_limit"] == "${var.snapshot_retention_limit}"
    assert group["snapshot_window"] == "${var.snapshot_window}"
    assert group["maintenance_window"] == "${var.maintenance_window}"
    retention = module.variables["snapshot_retention_limit"]
    assert retention["default"] >= 1
    assert ">= 1" in blocks(retention, "validation")[0]["condition"]
    assert production.modules["elasticache"]["snapshot_retention_limit"] >= 7


def test_alarms_cover_cpu_memory_evictions_and_connections(module: Config) -> None:
    metrics = {alarm["metric"] for alarm in module.locals["alarms"].values()}
    assert metrics == {
        "EngineCPUUtilization",
        "DatabaseMemoryUsagePercentage",
        "Evictions",
        "CurrConnections",
    }
    alarm = module.resource("aws_cloudwatch_metric_alarm", "this")
    assert alarm["namespace"] == "AWS/ElastiCache"
    assert alarm["alarm_actions"] == "${local.alarm_actions}"


def test_alarm_topic_is_optional_and_encrypted(module: Config) -> None:
    assert module.variables["create_alarm_topic"]["default"] is False
    assert module.variables["alarm_topic_arn"]["default"] is None
    topic = module.resource("aws_sns_topic", "alarms")
    assert topic["count"] == "${var.create_alarm_topic ? 1 : 0}"
    assert topic["kms_master_key_id"] == "${local.kms_key_arn}"


def test_secret_is_encrypted_with_the_customer_key(module: Config) -> None:
    secret = module.resource("aws_secretsmanager_secret", "auth_token")
    assert secret["kms_key_id"] == "${local.kms_key_arn}"


# --- Environments and the hand-off contract --------------------------------------------------


@pytest.mark.parametrize("env", ENVIRONMENTS, ids=lambda p: p.name)
def test_environment_uses_the_module(env: Path) -> None:
    config = load_config(env)
    assert config.modules["elasticache"]["source"] == "../../modules/elasticache"
    assert "aws" in config.providers


@pytest.mark.parametrize("env", ENVIRONMENTS, ids=lambda p: p.name)
def test_environment_outputs_feed_the_handoff(env: Path) -> None:
    outputs = load_config(env).outputs
    script = handoff_module()
    for name in (*script.REQUIRED_OUTPUTS, script.OUTPUT_ENVIRONMENT):
        assert name in outputs, f"{env.name} lacks output {name}"
    assert outputs["redis_primary_endpoint"]["value"] == (
        "${module.elasticache.primary_endpoint_address}"
    )
    assert outputs["redis_port"]["value"] == "${module.elasticache.port}"
    assert outputs["redis_tls_enabled"]["value"] == "${module.elasticache.tls_enabled}"
    assert outputs["redis_auth_secret_arn"]["value"] == "${module.elasticache.auth_secret_arn}"
    assert outputs["redisqueue_environment"]["value"] == "${local.environment}"
    assert load_config(env).locals["environment"] == env.name


def test_recorded_output_fixture_matches_the_production_outputs(production: Config) -> None:
    recorded = json.loads(OUTPUT_FIXTURE.read_text(encoding="utf-8"))
    assert set(recorded) == set(production.outputs)
    for name, entry in recorded.items():
        assert set(entry) == {"sensitive", "type", "value"}, name


def test_module_outputs_cover_what_the_environments_read(module: Config) -> None:
    for env in ENVIRONMENTS:
        text = json.dumps(load_config(env).outputs)
        for used in set(re.findall(r"module\.elasticache\.([a-z_]+)", text)):
            assert used in module.outputs, f"{env.name} reads missing module output {used}"


@pytest.mark.parametrize("env", ENVIRONMENTS, ids=lambda p: p.name)
def test_tfvars_example_sets_every_required_variable(env: Path) -> None:
    required = {n for n, body in load_config(env).variables.items() if "default" not in body}
    example = load_hcl(env / "terraform.tfvars.example")
    assert required <= set(example), f"{env.name}: example lacks {required - set(example)}"
    assert set(example) <= set(load_config(env).variables)


def test_module_readme_lists_every_input_and_output(module: Config) -> None:
    readme = (MODULE / "README.md").read_text(encoding="utf-8")
    for name in [*module.variables, *module.outputs]:
        assert f"\n| {name} |" in readme, f"modules/elasticache/README.md lacks {name}"


def test_module_readme_documents_a_pinned_git_source_that_exists() -> None:
    readme = (MODULE / "README.md").read_text(encoding="utf-8")
    example = (EXAMPLE / "main.tf").read_text(encoding="utf-8")
    pattern = (
        r"git::https://github\.com/redisqueue/redisqueue-operator\.git"
        r"//([a-z/]+)\?ref=(v\d+\.\d+\.\d+)"
    )
    sources = re.findall(pattern, readme) + re.findall(pattern, example)
    assert len(sources) == 2, "the README and the example show the git:: source"
    for path, _ref in sources:
        assert (REPO / path).resolve() == MODULE, path
    assert "never a branch" in readme


def test_example_is_a_complete_root_module_that_feeds_the_handoff() -> None:
    for name in ("main.tf", "variables.tf", "outputs.tf", "versions.tf", "README.md"):
        assert (EXAMPLE / name).is_file(), f"examples/basic/{name} is missing"
    config = load_config(EXAMPLE)
    (call,) = config.modules.values()
    assert call["source"] == "../.."
    module_inputs = load_config(MODULE).variables
    required = {n for n, body in module_inputs.items() if "default" not in body}
    assert required <= set(call) - {"source"}, required - set(call)
    assert set(call) - {"source"} <= set(module_inputs)
    script = handoff_module()
    for name in (*script.REQUIRED_OUTPUTS, script.OUTPUT_ENVIRONMENT):
        assert name in config.outputs, f"examples/basic lacks output {name}"
    required_vars = {n for n, body in config.variables.items() if "default" not in body}
    assert required_vars == set(load_hcl(EXAMPLE / "terraform.tfvars.example"))


# --- Code hygiene --------------------------------------------------------------------------


def test_terraform_files_use_canonical_whitespace() -> None:
    # The cheap part of `terraform fmt`; fmt-check.sh does the rest where tofu is built.
    for path in [*tf_files(), *TERRAFORM.rglob("*.example")]:
        text = path.read_text(encoding="utf-8")
        assert "\t" not in text, f"{path}: tab"
        assert "\r" not in text, f"{path}: carriage return"
        assert text.endswith("\n") and not text.endswith("\n\n"), f"{path}: end of file"
        for number, line in enumerate(text.splitlines(), 1):
            assert line == line.rstrip(), f"{path}:{number}: trailing whitespace"


def test_every_checkov_skip_gives_its_reason() -> None:
    skip = re.compile(r"#\s*checkov:skip=([A-Z0-9_]+)(?::(.*))?")
    for path in tf_files():
        for match in skip.finditer(path.read_text(encoding="utf-8")):
            reason = (match.group(2) or "").strip()
            assert len(reason) >= 30, f"{path}: skip of {match.group(1)} has no real reason"


# --- Static security scan ------------------------------------------------------------------


def _checkov(*args: str) -> dict[str, Any]:
    result = subprocess.run(
        [str(CHECKOV), "-o", "json", *args],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode in (0, 1), result.stderr[-2000:]
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    (terraform,) = [r for r in reports if r["check_type"] == "terraform"]
    return dict(terraform)


@pytest.fixture(scope="module")
def checkov_report() -> dict[str, Any]:
    # The first run installs checkov into .cache/checkov/ (about a minute).
    return _checkov()


@pytest.mark.timeout(900)
def test_checkov_finds_no_failed_checks(checkov_report: dict[str, Any]) -> None:
    summary = checkov_report["summary"]
    failed = [
        f"{c['check_id']} {c['resource']}" for c in checkov_report["results"]["failed_checks"]
    ]
    assert summary["parsing_errors"] == 0
    assert summary["failed"] == 0, failed
    assert summary["passed"] > 40


def test_checkov_verifies_the_elasticache_controls(checkov_report: dict[str, Any]) -> None:
    results = checkov_report["results"]
    group = "aws_elasticache_replication_group.this"
    passed = {c["check_id"] for c in results["passed_checks"] if c["resource"].endswith(group)}
    # Encryption at rest (and with a customer key), in transit, TLS required, the
    # write-only AUTH token, snapshots, and a parameter group of its own.
    expected = {"CKV_AWS_29", "CKV_AWS_30", "CKV_AWS_191"}
    expected |= {"CKV2_RQ_1", "CKV2_RQ_2", "CKV2_RQ_3", "CKV2_RQ_4"}
    assert expected <= passed, expected - passed


def test_checkov_skips_only_with_a_reason(checkov_report: dict[str, Any]) -> None:
    skipped = checkov_report["results"]["skipped_checks"]
    assert {c["check_id"] for c in skipped} <= {
        "CKV_AWS_31",  # reads only the legacy auth_token; CKV2_RQ_2 checks auth_token_wo
        "CKV2_AWS_50",  # cannot evaluate the derived failover flag
        "CKV2_AWS_57",  # rotation is Terraform's ROTATE/SET, not a rotation Lambda
        "CKV_AWS_109",  # the next three: resource "*" in a KMS key policy is that key
        "CKV_AWS_111",
        "CKV_AWS_356",
    }
    for check in skipped:
        assert len(check["check_result"].get("suppress_comment", "")) >= 30, check["check_id"]


@pytest.mark.timeout(900)
def test_a_checkov_environment_made_elsewhere_is_made_again(tmp_path: Path) -> None:
    # A .cache copied from another checkout (or a checkout moved) holds a virtualenv whose
    # scripts name the old path: run as it is, checkov "cannot execute".
    venv = tmp_path / "checkov"
    (venv / "bin").mkdir(parents=True)
    (venv / ".installed").write_text("/elsewhere/.cache/checkov/3.3.30\n")
    stale = venv / "bin" / "checkov"
    stale.write_text("#!/elsewhere/.cache/checkov/3.3.30/bin/python\n")
    stale.chmod(0o755)
    result = subprocess.run(
        [str(CHECKOV), "--version"],
        env={**os.environ, "CHECKOV_VENV": str(venv)},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "installing checkov" in result.stderr
    assert re.fullmatch(r"\d+\.\d+\.\d+", result.stdout.strip()), result.stdout
    assert (venv / ".installed").read_text().strip() == str(venv)


@pytest.mark.timeout(900)
def test_checkov_catches_an_insecure_replication_group() -> None:
    report = _checkov("-d", str(INSECURE_FIXTURE))
    failed = {c["check_id"] for c in report["results"]["failed_checks"]}
    expected = {"CKV_AWS_29", "CKV_AWS_30", "CKV_AWS_31", "CKV_AWS_191"}
    expected |= {"CKV2_RQ_1", "CKV2_RQ_2", "CKV2_RQ_3", "CKV2_RQ_4"}
    assert expected <= failed, expected - failed


# --- Formatting (tofu fmt, where it can be built) -------------------------------------------


@pytest.mark.gotools  # tofu is built from its Go module
@pytest.mark.skipif(not FMT_CHECK.exists(), reason="no fmt-check.sh: see terraform/README.md")
@pytest.mark.skipif(shutil.which("go") is None, reason="building tofu needs the go toolchain")
@pytest.mark.timeout(3600)
def test_terraform_files_are_formatted_by_tofu_fmt() -> None:
    refuse_go_builds("tofu", "gotools")
    result = subprocess.run(
        [str(FMT_CHECK)], capture_output=True, text=True, timeout=3600, check=False
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


# --- The hand-off script -------------------------------------------------------------------


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str

    def documents(self) -> list[dict[str, Any]]:
        return [doc for doc in yaml.safe_load_all(self.stdout) if doc is not None]


def recorded_outputs() -> dict[str, Any]:
    return dict(json.loads(OUTPUT_FIXTURE.read_text(encoding="utf-8")))


def handoff(
    *args: str,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
    path_prefix: Path | None = None,
) -> Run:
    environment = {k: v for k, v in os.environ.items() if k not in ("REDIS_AUTH_TOKEN", "AWS_CLI")}
    environment.update(env or {})
    if path_prefix is not None:
        environment["PATH"] = f"{path_prefix}{os.pathsep}{environment.get('PATH', '')}"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        input=OUTPUT_FIXTURE.read_text(encoding="utf-8") if stdin is None else stdin,
        capture_output=True,
        text=True,
        env=environment,
        timeout=60,
        check=False,
    )
    # Whatever happened, the token never reaches stderr.
    assert TOKEN not in result.stderr
    return Run(result.returncode, result.stdout, result.stderr)


def assert_input_error(run: Run, *needles: str) -> None:
    assert run.returncode == 2, run.stderr
    assert run.stdout == ""
    assert "Traceback" not in run.stderr
    assert run.stderr.startswith("elasticache_to_k8s.py: error: "), run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    for needle in needles:
        assert needle in run.stderr, run.stderr


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


BASE_ARGS = ("--namespace", "marketplace", "--name", "analysis-jobs")


def test_handoff_renders_the_secret_then_the_redisqueue(token_file: Path) -> None:
    run = handoff(
        *BASE_ARGS, "--inject", "analysis-worker-redis", "--auth-token-file", str(token_file)
    )
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    secret, queue = run.documents()
    assert secret == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "analysis-jobs-redis-auth",
            "namespace": "marketplace",
            "labels": {
                "app.kubernetes.io/part-of": "redisqueue",
                "redisqueue.dev/redisqueue": "analysis-jobs",
            },
            "annotations": {"redisqueue.dev/source-secret-arn": SECRET_ARN},
        },
        "type": "Opaque",
        "stringData": {"password": TOKEN},
    }
    assert queue == {
        "apiVersion": "redisqueue.dev/v1alpha1",
        "kind": "RedisQueue",
        "metadata": {
            "name": "analysis-jobs",
            "namespace": "marketplace",
            "labels": {"app.kubernetes.io/part-of": "redisqueue"},
        },
        "spec": {
            "environment": "production",
            "redis": {"external": {"host": PRIMARY, "port": 6379, "tls": {"enabled": True}}},
            "auth": {"secretRef": {"name": "analysis-jobs-redis-auth", "key": "password"}},
            "inject": [{"secretName": "analysis-worker-redis"}],
        },
    }


def test_handoff_redisqueue_is_a_valid_spec_for_the_operator(token_file: Path) -> None:
    spec_module = pytest.importorskip("redisqueue.controller.resource.spec")
    run = handoff(
        *BASE_ARGS,
        "--inject",
        "analysis-worker-redis",
        "--inject",
        "analysis-api-redis",
        "--username",
        "analysis",
        "--ca-secret",
        "corporate-ca:bundle.pem",
        "--auth-token-file",
        str(token_file),
    )
    assert run.returncode == 0, run.stderr
    spec = spec_module.parse_spec(run.documents()[1]["spec"])
    assert spec.redis.external.host == PRIMARY
    assert spec.redis.external.tls.enabled is True
    assert spec.redis.external.tls.insecure_skip_verify is False
    assert spec.auth.username == "analysis"
    assert [target.secret_name for target in spec.inject] == [
        "analysis-worker-redis",
        "analysis-api-redis",
    ]


def test_handoff_takes_the_token_from_the_environment() -> None:
    run = handoff(*BASE_ARGS, env={"REDIS_AUTH_TOKEN": TOKEN})
    assert run.returncode == 0, run.stderr
    assert run.documents()[0]["stringData"] == {"password": TOKEN}


def test_handoff_names_secret_and_key_as_asked(token_file: Path) -> None:
    run = handoff(
        *BASE_ARGS,
        "--auth-secret-name",
        "elasticache-auth",
        "--auth-secret-key",
        "token",
        "--environment",
        "development",
        "--auth-token-file",
        str(token_file),
    )
    assert run.returncode == 0, run.stderr
    secret, queue = run.documents()
    assert secret["metadata"]["name"] == "elasticache-auth"
    assert secret["stringData"] == {"token": TOKEN}
    assert queue["spec"]["auth"] == {"secretRef": {"name": "elasticache-auth", "key": "token"}}
    assert queue["spec"]["environment"] == "development"
    assert "inject" not in queue["spec"]


def fake_aws(directory: Path, *, stdout: str, exit_code: int = 0, stderr: str = "") -> Path:
    """An `aws` executable that records its argv and answers like the CLI would."""
    directory.mkdir(parents=True, exist_ok=True)
    record = directory / "argv.json"
    script = directory / "aws"
    script.write_text(
        "#!" + sys.executable + "\n"
        "import json, sys\n"
        f"open({str(record)!r}, 'w').write(json.dumps(sys.argv[1:]))\n"
        f"sys.stdout.write({stdout!r})\n"
        f"sys.stderr.write({stderr!r})\n"
        f"sys.exit({exit_code})\n",
        encoding="utf-8",
    )
    script.chmod(0o755)
    return record


def test_handoff_fetches_the_token_from_secrets_manager(tmp_path: Path) -> None:
    record = fake_aws(tmp_path / "bin", stdout=TOKEN + "\n")
    run = handoff(*BASE_ARGS, "--fetch-secret", path_prefix=tmp_path / "bin")
    assert run.returncode == 0, run.stderr
    assert run.documents()[0]["stringData"] == {"password": TOKEN}
    argv = json.loads(record.read_text(encoding="utf-8"))
    assert TOKEN not in json.dumps(argv)
    assert argv[:2] == ["secretsmanager", "get-secret-value"]
    assert argv[argv.index("--secret-id") + 1] == SECRET_ARN
    assert argv[argv.index("--region") + 1] == "eu-central-1"  # taken from the ARN
    assert argv[argv.index("--version-stage") + 1] == "AWSCURRENT"
    assert argv[argv.index("--query") + 1] == "SecretString"


def outputs_in_phase(phase: str) -> str:
    outputs = recorded_outputs()
    outputs["redis_auth_token_rotation_phase"]["value"] = phase
    return json.dumps(outputs)


def test_handoff_can_fetch_the_previous_token_to_roll_back(tmp_path: Path) -> None:
    # Only while ElastiCache still accepts it: during the overlap (ROTATE).
    record = fake_aws(tmp_path / "bin", stdout=json.dumps({"password": TOKEN}))
    run = handoff(
        *BASE_ARGS,
        "--fetch-secret",
        "--secret-version-stage",
        "AWSPREVIOUS",
        "--aws-profile",
        "prod",
        "--aws-cli",
        str(tmp_path / "bin" / "aws"),
        stdin=outputs_in_phase("Overlap"),
    )
    assert run.returncode == 0, run.stderr
    assert run.documents()[0]["stringData"] == {"password": TOKEN}
    argv = json.loads(record.read_text(encoding="utf-8"))
    assert argv[argv.index("--version-stage") + 1] == "AWSPREVIOUS"
    assert argv[argv.index("--profile") + 1] == "prod"


def test_handoff_refuses_to_roll_back_to_a_token_elasticache_no_longer_accepts(
    tmp_path: Path,
) -> None:
    record = fake_aws(tmp_path / "bin", stdout=TOKEN)
    run = handoff(
        *BASE_ARGS,
        "--fetch-secret",
        "--secret-version-stage",
        "AWSPREVIOUS",
        path_prefix=tmp_path / "bin",
        stdin=outputs_in_phase("Complete"),
    )
    assert_input_error(run, "redis_auth_token_rotation_phase", "lock every client out")
    assert not record.exists()  # refused before anything was fetched


def test_handoff_says_what_comes_next_while_elasticache_accepts_both_tokens(
    token_file: Path,
) -> None:
    run = handoff(
        *BASE_ARGS,
        "--inject",
        "analysis-worker-redis",
        "--auth-token-file",
        str(token_file),
        stdin=outputs_in_phase("Overlap"),
    )
    assert run.returncode == 0, run.stderr
    assert "phase Overlap" in run.stderr and "ReadyToRemoveOld" in run.stderr
    assert 'auth_token_update_strategy = "SET"' in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1
    quiet = handoff(*BASE_ARGS, "--auth-token-file", str(token_file))  # phase Complete
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_handoff_asks_for_restarts_and_the_grace_period(token_file: Path) -> None:
    run = handoff(
        *BASE_ARGS,
        "--inject",
        "worker-redis",
        "--inject",
        "api-redis",
        "--restart",
        "worker-redis=Deployment/worker",
        "--restart",
        "worker-redis=StatefulSet/batch",
        "--grace-period",
        "300",
        "--auth-token-file",
        str(token_file),
    )
    assert run.returncode == 0, run.stderr
    queue = run.documents()[1]
    assert queue["spec"]["inject"] == [
        {
            "secretName": "worker-redis",
            "restart": [
                {"kind": "Deployment", "name": "worker"},
                {"kind": "StatefulSet", "name": "batch"},
            ],
        },
        {"secretName": "api-redis"},
    ]
    assert queue["spec"]["rotation"] == {"gracePeriodSeconds": 300}
    spec_module = pytest.importorskip("redisqueue.controller.resource.spec")
    spec = spec_module.parse_spec(queue["spec"])
    assert spec.rotation.grace_period_seconds == 300
    assert [w.name for w in spec.inject[0].restart] == ["worker", "batch"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--restart", "worker-redis=Deployment/worker"), "is not an --inject Secret"),
        (("--inject", "a", "--restart", "a=CronJob/x"), "cannot be restarted"),
        (("--inject", "a", "--restart", "a-Deployment-x"), "SECRET=KIND/NAME"),
        (("--inject", "a", "--restart", "a=Deployment/Bad_Name"), "not a valid Deployment name"),
        (("--grace-period", "5"), "from 10 to 86400"),
    ],
)
def test_handoff_refuses_bad_restarts_and_grace_periods(
    token_file: Path, args: tuple[str, ...], needle: str
) -> None:
    run = handoff(*BASE_ARGS, *args, "--auth-token-file", str(token_file))
    assert run.returncode == 2, run.stderr
    assert needle in run.stderr, run.stderr
    assert run.stdout == ""


def test_module_names_the_rotation_phase_as_the_operator_does(module: Config) -> None:
    expression = module.outputs["auth_token_rotation_phase"]["value"]
    assert "var.auth_token_update_strategy" in expression
    assert '"ROTATE"' in expression and '"Overlap"' in expression and '"Complete"' in expression
    for env in ENVIRONMENTS:
        outputs = load_config(env).outputs
        assert outputs["redis_auth_token_rotation_phase"]["value"] == (
            "${module.elasticache.auth_token_rotation_phase}"
        )
    script = handoff_module()
    # The phases the hand-off reads are the ones status.rotation shows.
    status = pytest.importorskip("redisqueue.controller.resource.status")
    phases = status.RotationStatus.model_fields["phase"].annotation
    assert set(script.ROTATION_PHASES) <= set(getattr(phases, "__args__", ()))


def test_handoff_reports_a_failed_fetch_in_one_line(tmp_path: Path) -> None:
    fake_aws(
        tmp_path / "bin",
        stdout="",
        exit_code=254,
        stderr="\nAn error occurred (AccessDeniedException) when calling the "
        "GetSecretValue operation: not authorized\n",
    )
    run = handoff(*BASE_ARGS, "--fetch-secret", path_prefix=tmp_path / "bin")
    assert_input_error(run, "exit 254", "AccessDeniedException")


def test_handoff_needs_the_aws_cli_to_fetch(tmp_path: Path) -> None:
    run = handoff(*BASE_ARGS, "--fetch-secret", "--aws-cli", str(tmp_path / "no-such-aws"))
    assert_input_error(run, "AWS CLI")


@pytest.mark.parametrize(
    "name", ["redis_primary_endpoint", "redis_port", "redis_tls_enabled", "redis_auth_secret_arn"]
)
def test_handoff_names_a_missing_output(name: str) -> None:
    outputs = recorded_outputs()
    del outputs[name]
    run = handoff(*BASE_ARGS, stdin=json.dumps(outputs), env={"REDIS_AUTH_TOKEN": TOKEN})
    assert_input_error(run, "missing terraform output", name)


def test_handoff_refuses_plaintext_for_production() -> None:
    outputs = recorded_outputs()
    outputs["redis_tls_enabled"]["value"] = False
    run = handoff(
        *BASE_ARGS,
        "--allow-plaintext",
        stdin=json.dumps(outputs),
        env={"REDIS_AUTH_TOKEN": TOKEN},
    )
    assert_input_error(run, "redis_tls_enabled", "production requires TLS")


def test_handoff_allows_plaintext_only_when_asked_outside_production() -> None:
    outputs = recorded_outputs()
    outputs["redis_tls_enabled"]["value"] = False
    outputs["redisqueue_environment"]["value"] = "development"
    refused = handoff(*BASE_ARGS, stdin=json.dumps(outputs), env={"REDIS_AUTH_TOKEN": TOKEN})
    assert_input_error(refused, "redis_tls_enabled", "--allow-plaintext")
    allowed = handoff(
        *BASE_ARGS,
        "--allow-plaintext",
        stdin=json.dumps(outputs),
        env={"REDIS_AUTH_TOKEN": TOKEN},
    )
    assert allowed.returncode == 0, allowed.stderr
    assert allowed.documents()[1]["spec"]["redis"]["external"]["tls"] == {"enabled": False}


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda o: o["redis_port"].update(value=0), "redis_port"),
        (lambda o: o["redis_port"].update(value="6379x"), "redis_port"),
        (lambda o: o["redis_tls_enabled"].update(value="yes"), "redis_tls_enabled"),
        (lambda o: o["redis_primary_endpoint"].update(value="rediss://host:6379"), "endpoint"),
        (lambda o: o["redis_auth_secret_arn"].update(value="elasticache/x"), "secret ARN"),
        (lambda o: o["redisqueue_environment"].update(value="staging"), "redisqueue_environment"),
        (lambda o: o.update(redis_port=6379), "has no 'value'"),
    ],
    ids=["port-zero", "port-text", "tls-text", "host-url", "arn", "environment", "flat-json"],
)
def test_handoff_refuses_malformed_outputs(mutate: Any, needle: str) -> None:
    outputs = recorded_outputs()
    mutate(outputs)
    run = handoff(*BASE_ARGS, stdin=json.dumps(outputs), env={"REDIS_AUTH_TOKEN": TOKEN})
    assert_input_error(run, needle)


@pytest.mark.parametrize(
    ("stdin", "needle"),
    [("", "no input"), ("{not json", "not the JSON"), ("[]", "JSON object")],
    ids=["empty", "garbage", "array"],
)
def test_handoff_refuses_input_that_is_not_terraform_output(stdin: str, needle: str) -> None:
    run = handoff(*BASE_ARGS, stdin=stdin, env={"REDIS_AUTH_TOKEN": TOKEN})
    assert_input_error(run, needle)


def test_handoff_needs_a_token_source() -> None:
    run = handoff(*BASE_ARGS)
    assert_input_error(run, "no AUTH token source", "--fetch-secret", "REDIS_AUTH_TOKEN")


def test_handoff_token_sources_exclude_each_other(token_file: Path) -> None:
    run = handoff(*BASE_ARGS, "--fetch-secret", "--auth-token-file", str(token_file))
    assert run.returncode == 2
    assert "not allowed with" in run.stderr


@pytest.mark.parametrize(
    "bad_token",
    [TOKEN[:10], TOKEN + " " + TOKEN[:4], TOKEN[:20] + "@" + TOKEN[20:], TOKEN * 3],
    ids=["short", "space", "at-sign", "long"],
)
def test_handoff_rejects_an_invalid_token_without_echoing_it(bad_token: str) -> None:
    run = handoff(*BASE_ARGS, env={"REDIS_AUTH_TOKEN": bad_token})
    assert_input_error(run, "not a valid ElastiCache token")
    assert bad_token not in run.stderr


@pytest.mark.parametrize(
    "argv",
    [("--auth-token", TOKEN), (f"--auth-token={TOKEN}",), ("--auth-token-fil", TOKEN), (TOKEN,)],
    ids=["separate", "equals", "abbreviated", "positional"],
)
def test_handoff_never_echoes_a_token_given_as_an_argument(argv: tuple[str, ...]) -> None:
    run = handoff(*BASE_ARGS, *argv)
    assert run.returncode == 2
    assert run.stdout == ""
    assert "values not shown" in run.stderr


def test_handoff_does_not_echo_a_token_typed_as_the_file_path() -> None:
    run = handoff(*BASE_ARGS, "--auth-token-file", TOKEN)
    assert_input_error(run, "--auth-token-file")


def test_handoff_refuses_invalid_kubernetes_names(token_file: Path) -> None:
    run = handoff(
        "--namespace",
        "Marketplace",
        "--name",
        "analysis-jobs",
        "--auth-token-file",
        str(token_file),
    )
    assert run.returncode == 2
    assert "not a valid namespace" in run.stderr


def test_handoff_without_secret_renders_only_the_redisqueue() -> None:
    run = handoff(*BASE_ARGS, "--no-secret")
    assert run.returncode == 0, run.stderr
    (queue,) = run.documents()
    assert queue["kind"] == "RedisQueue"
    assert TOKEN not in run.stdout


def test_handoff_writes_a_private_output_file(tmp_path: Path, token_file: Path) -> None:
    target = tmp_path / "redisqueue.yaml"
    run = handoff(*BASE_ARGS, "--auth-token-file", str(token_file), "--output", str(target))
    assert run.returncode == 0, run.stderr
    assert run.stdout == ""
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    kinds = [doc["kind"] for doc in yaml.safe_load_all(target.read_text(encoding="utf-8"))]
    assert kinds == ["Secret", "RedisQueue"]


def test_handoff_script_is_documented_as_the_one_command_path() -> None:
    readme = (TERRAFORM / "README.md").read_text(encoding="utf-8")
    assert "elasticache_to_k8s.py" in readme
    for step in ("ROTATE", "SET", "auth_token_version"):
        assert step in readme


def _iter_tokens_in_repository() -> Iterator[Path]:
    for path in [*TERRAFORM.rglob("*"), OUTPUT_FIXTURE]:
        if path.is_file() and TOKEN in path.read_text(encoding="utf-8", errors="ignore"):
            yield path


def test_recorded_fixture_and_terraform_hold_no_token() -> None:
    assert not list(_iter_tokens_in_repository())
