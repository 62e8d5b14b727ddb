"""The README cannot drift: its YAML validates, its sample table is what the default run prints.

The embedded default (`make run`'s config) runs once here, for real, in a
temporary folder; the same run builds the Snakemake report.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

from diffad.data import dataset_categories
from diffad.plan import method_set

REPO = Path(__file__).resolve().parents[1]
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
    found = method_set(config["methods"], config["method_grids"], config["best_of"])
    assert set(config["methods"]) <= set(found.resolved)
    for name, dataset in config["datasets"].items():
        assert dataset_categories(name, dataset)


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """`make run`'s snakemake command on config/config.yaml, in a fresh folder."""
    workdir = tmp_path_factory.mktemp("default")
    for name in ("config",):
        (workdir / name).symlink_to(REPO / name)
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
           "--cores", "2", "--configfile", str(REPO / "config/config.yaml")]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return workdir


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


def test_the_report_shows_the_table(default_run):
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d",
           str(default_run), "--cores", "1", "--configfile", str(REPO / "config/config.yaml"),
           "--report", "report.html"]
    subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True)
    html = (default_run / "report.html").read_text()
    # The table page is embedded as HTML, the .tex and .csv as downloads.
    for name in ("default.html", "default.tex", "default.csv", "metrics.png"):
        assert name in html
