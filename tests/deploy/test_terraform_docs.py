"""The module README's Inputs and Outputs tables are terraform-docs' output, not hand-kept.

terraform-docs is built from its Go module (tests/tools/terraform-docs/). The test runs it on a
copy of the module, with the module's own .terraform-docs.yml, and compares the README it
writes with the committed one.
"""

from __future__ import annotations

import difflib
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.go_tools import go_tool

pytestmark = pytest.mark.gotools

MODULE = Path(__file__).resolve().parents[2] / "terraform" / "modules" / "elasticache"
REGENERATE = '"$(tests/tools/terraform-docs/build.sh)/terraform-docs" terraform/modules/elasticache'


def generate(module: Path) -> str:
    """Run terraform-docs on ``module`` (in place) and return the README it wrote."""
    proc = subprocess.run(
        [str(go_tool("terraform-docs")), str(module)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return (module / "README.md").read_text(encoding="utf-8")


def copy_module(tmp_path: Path) -> Path:
    copy = tmp_path / "elasticache"
    shutil.copytree(MODULE, copy, ignore=shutil.ignore_patterns("examples", ".terraform"))
    return copy


def test_committed_tables_are_what_terraform_docs_generates(tmp_path: Path) -> None:
    committed = (MODULE / "README.md").read_text(encoding="utf-8")
    assert committed.count("<!-- BEGIN_TF_DOCS -->") == 1
    assert committed.count("<!-- END_TF_DOCS -->") == 1
    generated = generate(copy_module(tmp_path))
    diff = "".join(
        difflib.unified_diff(
            committed.splitlines(keepends=True),
            generated.splitlines(keepends=True),
            "README.md (committed)",
            "README.md (terraform-docs)",
        )
    )
    assert diff == "", f"regenerate the tables: {REGENERATE}\n{diff}"
    assert "## Inputs" in generated and "## Outputs" in generated
    assert REGENERATE in committed, "the README says how to regenerate its tables"


def test_a_changed_description_changes_the_generated_tables(tmp_path: Path) -> None:
    # The comparison above is not vacuous: terraform-docs reads the variables it documents.
    copy = copy_module(tmp_path)
    variables = copy / "variables.tf"
    text = variables.read_text(encoding="utf-8")
    old = "VPC that holds the cache and its security group."
    assert old in text
    variables.write_text(text.replace(old, "The VPC, described differently."), encoding="utf-8")
    generated = generate(copy)
    assert "| vpc_id | The VPC, described differently. |" in generated
    assert generated != (MODULE / "README.md").read_text(encoding="utf-8")
