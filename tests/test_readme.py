"""The README cannot drift: its YAML validates, its sample table is what the default run prints.

The embedded default (`make run`'s config) runs once per test run, for real
(conftest.py's ``default_run``); the same run builds the Snakemake report.
"""

from __future__ import annotations

import re

import pytest
import yaml
from snakemake.utils import validate
from snakemake_runs import REPO, snakemake

from diffad.plan import Plan

README = (REPO / "README.md").read_text()
SCHEMA = REPO / "config" / "schema" / "config.schema.yaml"


def yaml_blocks(text: str) -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", text, flags=re.S)


def test_readme_has_yaml_to_check():
    assert yaml_blocks(README)


@pytest.mark.parametrize("block", yaml_blocks(README))
def test_every_yaml_block_of_the_readme_is_a_valid_config(block):
    config = yaml.safe_load(block)
    validate(config, str(SCHEMA))  # fills the defaults, as at DAG build
    plan = Plan.from_config(config)
    assert set(config["methods"]) <= set(plan.methods) | set(plan.variants.seed_groups)
    for name in config["datasets"]:
        assert plan.full_categories[name]


#: Metric cells of the README's sample may differ from a run by this much (points): the
#: diffusion trainings' multi-threaded float sums differ between CPUs (seen: 0.4 on ESM).
TOLERANCE = 1.0


def cells(table: str) -> list[list[str]]:
    return [[cell.strip() for cell in line.strip("|").split("|")]
            for line in table.strip().splitlines()]


def test_the_readme_sample_table_is_what_the_default_run_prints(default_run):
    sample = re.search(r"<!-- sample-table[^\n]*-->\n```\n(.*?)```", README, flags=re.S)
    assert sample, "the README lost its sample-table block"
    printed = (default_run / "results/tables/default.md").read_text()
    # The quality metrics are deterministic on one machine; the cost table below them
    # holds timings.
    quality = printed.split("\n## Cost")[0]
    assert "## Cost" in printed
    expected, got = cells(sample.group(1)), cells(quality)
    assert len(expected) == len(got), quality
    for want, have in zip(expected, got, strict=True):
        assert len(want) == len(have), (want, have)
        for a, b in zip(want, have, strict=True):
            if re.fullmatch(r"\d+\.\d", a) and re.fullmatch(r"\d+\.\d", b):
                assert abs(float(a) - float(b)) <= TOLERANCE, (want, have)
            else:
                assert a == b, (want, have)


def test_the_report_shows_the_table(default_run, tmp_path):
    report = tmp_path / "report.html"
    snakemake(default_run, "--report", str(report), cores=1)
    html = report.read_text()
    # The table page is embedded as HTML, the .tex and .csv as downloads.
    for name in ("default.html", "default.tex", "default.csv", "metrics.png"):
        assert name in html
