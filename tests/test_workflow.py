"""Real snakemake runs of the whole workflow in a temporary directory.

A small synthetic dataset (two categories, 64 px), two PatchCore variants,
latent inversion variants sharing one model, and a method kind of the
tests' own (tests/plugins/toy_method.py) with a score-tier sweep keep each
run around a minute on two cores.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from safetensors import safe_open

REPO = Path(__file__).resolve().parents[1]
TOY_PLUGIN = str(REPO / "tests" / "plugins" / "toy_method.py")

pytestmark = pytest.mark.workflow


ESM = {"kind": "esm", "resolution": 32, "block_out_channels": [16, 32], "layers_per_block": 1,
       "attention_levels": 0, "train_timesteps": 100, "epochs": 2, "t_d": 5,
       "feature_backbone": "tf_efficientnet_lite0", "feature_layers": [1, 2],
       "infer_batch_size": 16}
LATENT_INVERSION = {"kind": "latent_inversion", "backbone": "tf_efficientnet_lite0",
                    "block_out_channels": [32, 64], "layers_per_block": 1, "epochs": 3,
                    "batch_size": 8}


def small_config(weights_root: Path, **overrides) -> dict:
    config = {
        "experiment": "small",
        "reference_dir": str(REPO / "config" / "reference"),
        "datasets": {
            "synthetic": {
                "kind": "synthetic",
                "root": "data/synthetic",
                "image_size": 64,
                "synthetic": {"n_train": 12, "n_test_good": 5, "n_test_defect": 2},
            }
        },
        "methods": {
            "patchcore_a": {"kind": "patchcore", "backbone": "tf_efficientnet_lite0",
                            "coreset_ratio": 0.5},
            "patchcore_b": {"kind": "patchcore", "backbone": "tf_efficientnet_lite0",
                            "coreset_ratio": 0.25},
            # One memory bank for both categories (category `all`), evaluated per category.
            "patchcore_mc": {"kind": "patchcore", "backbone": "tf_efficientnet_lite0",
                             "coreset_ratio": 0.25, "multi_class": True},
            "li": LATENT_INVERSION,
            # A score setting only: it must reuse li's inference.
            "li_nll": {**LATENT_INVERSION, "score": "nll"},
            "esm_sigma": {**ESM, "sampler": "esm_sigma", "per_category": {"widget": {"t_d": 3}}},
        },
        "plugins": [TOY_PLUGIN],
        "method_grids": {
            # li_s3 differs from li in inference settings only: it must reuse li's model.
            "li_steps": {
                "name": "li_s{steps}",
                "base": {**LATENT_INVERSION, "score": "combined_train"},
                "vary": {"steps": [3]},
            },
            # A kind of the tests' own, swept over its score tier: one infer job.
            "toy": {
                "name": "toy_p{power}_k{top_k}",
                "base": {"kind": "toy"},
                "vary": {"power": [1.0, 2.0], "top_k": [1, 50]},
            },
        },
        "runtime": {"weights_dir": str(weights_root), "seed": 0},
    }
    config.update(overrides)
    # A copy: tests mutate what they get, and the method dicts above are module constants.
    return copy.deepcopy(config)


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
           "--cores", "2", *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def planned_jobs(dry_run: str) -> list[tuple[str, str]]:
    """(rule, wildcards) of every job a dry run lists."""
    jobs = []
    for line in dry_run.splitlines():
        if rule := re.match(r"^\s*(?:local)?rule (\w+):", line):
            jobs.append((rule.group(1), ""))
        elif (wildcards := re.match(r"^\s+wildcards: (.*)$", line)) and jobs:
            jobs[-1] = (jobs[-1][0], wildcards.group(1))
    return jobs


def write_config(workdir: Path, config: dict) -> None:
    (workdir / "config").mkdir(parents=True, exist_ok=True)
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))


def outputs_of(workdir: Path, method: str) -> dict[Path, int]:
    files = [p for stage in ("models", "scores", "metrics")
             for p in (workdir / "results" / stage / method).rglob("*") if p.is_file()]
    return {p: p.stat().st_mtime_ns for p in files}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, weights_root):
    """One complete run, shared by the tests that only read or rerun it."""
    workdir = tmp_path_factory.mktemp("run")
    write_config(workdir, small_config(weights_root))
    snakemake(workdir)
    return workdir


def test_full_run_writes_every_contracted_output(finished_run):
    workdir = finished_run
    categories = ["tiles", "widget"]
    for category in categories:
        manifest = pd.read_parquet(workdir / f"results/data/synthetic/{category}.parquet")
        assert set(manifest["category"]) == {category}
    for method in ("patchcore_a", "patchcore_b"):
        for category in categories:
            model = workdir / "results/models" / method / "synthetic" / category
            assert {p.name for p in model.iterdir()} >= {"memory_bank.safetensors",
                                                          "config.json", "metadata.json",
                                                          "loss.parquet"}
            stem = workdir / "results/scores" / method / "synthetic" / category
            scores = pd.read_parquet(f"{stem}.parquet")
            with safe_open(f"{stem}.maps.safetensors", framework="np") as fh:
                assert list(fh.keys()) == ["patch"]
                maps = fh.get_tensor("patch")
            assert maps.dtype.name == "float16" and maps.shape == (len(scores), 64, 64)
            assert {"label", "score_max", "score_reweighted", "latency_ms",
                    "image_path"} <= set(scores.columns)
            metrics = pd.read_parquet(workdir / "results/metrics" / method / "synthetic"
                                      / f"{category}.parquet")
            assert len(metrics) == 1
            assert {"i_auroc", "p_auroc", "aupro", "i_ap", "p_ap", "i_f1max", "p_f1max",
                    "latency_ms", "nfe", "params", "train_s", "protocol"} <= set(metrics.columns)
            assert 0.0 <= metrics["i_auroc"].iloc[0] <= 1.0
            assert metrics["params"].iloc[0] > 0
    # Inference variants share the model of the first variant with their training
    # params; score variants share the inference outputs too.
    assert not (workdir / "results/models/li_s3").exists()
    assert not (workdir / "results/scores/li_nll").exists()
    for category in categories:
        li = pd.read_parquet(workdir / f"results/scores/li_s3/synthetic/{category}.parquet")
        assert {"score_nll", "score_norm"} <= set(li.columns) and (li["nfe"] == 3).all()
        train = pd.read_parquet(workdir / f"results/scores/li_s3/synthetic/train/{category}"
                                ".parquet")
        assert len(train) == 12 and "score_nll" in train.columns
        assert (workdir / f"results/metrics/li_s3/synthetic/{category}.parquet").exists()
        ours = pd.read_parquet(workdir / f"results/metrics/li/synthetic/{category}.parquet")
        nll = pd.read_parquet(workdir / f"results/metrics/li_nll/synthetic/{category}.parquet")
        assert ours["i_auroc"].iloc[0] != nll["i_auroc"].iloc[0] or (
            ours["i_ap"].iloc[0] != nll["i_ap"].iloc[0])
    # Backbone features were extracted once per (category, split) and reused by all variants.
    assert len(list((workdir / "results/cache/features").glob("*.safetensors"))) == 4
    table = (workdir / "results/tables/small.md").read_text()
    assert "patchcore_a" in table and "mean" in table
    assert "## li_steps on synthetic: mean i_auroc" in table
    for ext in ("csv", "tex"):
        assert (workdir / f"results/tables/small.{ext}").stat().st_size > 0
    assert (workdir / "results/figures/small/metrics.png").stat().st_size > 0
    # Every rule wrote its log, which names the rule and the wildcards first.
    log = (workdir / "logs/train/patchcore_a/synthetic/tiles.log").read_text()
    assert "rule train: method=patchcore_a dataset=synthetic category=tiles" in log


def test_a_plugin_kind_runs_with_a_score_tier_sweep_on_one_inference(finished_run):
    workdir = finished_run
    # Four score-tier variants of one plugin kind: one model, one inference.
    assert [p.name for p in (workdir / "results/models").iterdir() if p.name.startswith("toy")
            ] == ["toy_p1.0_k1"]
    assert [p.name for p in (workdir / "results/scores").iterdir() if p.name.startswith("toy")
            ] == ["toy_p1.0_k1"]
    config = json.loads((workdir / "results/models/toy_p1.0_k1/synthetic/tiles/config.json")
                        .read_text())
    assert config["kind"] == "toy" and config["plugin"] == TOY_PLUGIN
    rows = {name: pd.read_parquet(workdir / f"results/metrics/{name}/synthetic/tiles.parquet")
            for name in ("toy_p1.0_k1", "toy_p2.0_k1", "toy_p1.0_k50", "toy_p2.0_k50")}
    # A monotone power keeps the ranking of max-pooled scores, not of a top-50 mean.
    assert rows["toy_p1.0_k1"]["i_auroc"].iloc[0] == rows["toy_p2.0_k1"]["i_auroc"].iloc[0]
    assert rows["toy_p1.0_k1"]["p_auroc"].iloc[0] == rows["toy_p2.0_k1"]["p_auroc"].iloc[0]
    assert len({round(float(r["i_ap"].iloc[0]), 12) for r in rows.values()}
               | {round(float(r["aupro"].iloc[0]), 12) for r in rows.values()}) > 1
    assert "toy_p2.0_k50" in (workdir / "results/tables/small.md").read_text()


def test_esm_runs_with_a_per_category_start_and_a_fusion_weight_is_evaluate_only(
        finished_run, weights_root):
    workdir = finished_run
    for category, t_d in (("tiles", 5), ("widget", 3)):
        scores = pd.read_parquet(workdir / f"results/scores/esm_sigma/synthetic/{category}.parquet")
        assert {"score_cos", "score_re", "score_u", "score_kl"} <= set(scores.columns)
        assert (scores["nfe"] == 2 * t_d + 2).all()
    config = small_config(weights_root)
    config["methods"]["esm_sigma"]["weight_kl"] = 0.0
    write_config(workdir, config)
    planned = {rule for rule, w in planned_jobs(snakemake(workdir, "--dry-run").stdout)
               if "method=esm_sigma" in w}
    write_config(workdir, small_config(weights_root))
    assert planned == {"evaluate", "heatmaps"}


def test_multi_class_model_trains_once_on_every_category(finished_run):
    workdir = finished_run
    models = workdir / "results/models/patchcore_mc/synthetic"
    assert [p.name for p in models.iterdir()] == ["all"]
    meta = json.loads((models / "all/metadata.json").read_text())
    assert meta["categories"] == ["tiles", "widget"] and meta["n_train"] == 24
    for category in ("tiles", "widget"):
        metrics = pd.read_parquet(workdir / f"results/metrics/patchcore_mc/synthetic/"
                                  f"{category}.parquet")
        assert metrics["n_test"].iloc[0] == 13 and metrics["i_auroc"].iloc[0] > 0.5


def test_second_run_has_nothing_to_do(finished_run):
    result = snakemake(finished_run, "--dry-run")
    assert "Nothing to be done" in result.stdout + result.stderr


def test_changing_one_method_reruns_only_that_method(finished_run, weights_root):
    workdir = finished_run
    before_a = outputs_of(workdir, "patchcore_a")
    before_b = outputs_of(workdir, "patchcore_b")
    config = small_config(weights_root)
    config["methods"]["patchcore_b"]["coreset_ratio"] = 0.3
    # The changed config stays: later tests on this run see it consistent with the outputs.
    write_config(workdir, config)
    snakemake(workdir)
    assert outputs_of(workdir, "patchcore_a") == before_a
    after_b = outputs_of(workdir, "patchcore_b")
    assert after_b.keys() == before_b.keys()
    assert all(after_b[p] > before_b[p] for p in before_b)


def test_forced_rerun_of_one_category_touches_nothing_else(finished_run):
    workdir = finished_run
    before = {**outputs_of(workdir, "patchcore_a"), **outputs_of(workdir, "patchcore_b")}
    table = workdir / "results/tables/small.md"
    table_before = table.stat().st_mtime_ns
    snakemake(workdir, "--forcerun", "results/models/patchcore_a/synthetic/tiles/metadata.json")
    after = {**outputs_of(workdir, "patchcore_a"), **outputs_of(workdir, "patchcore_b")}
    changed = {p.relative_to(workdir / "results").as_posix() for p in before
               if after[p] != before[p]}
    assert changed == {
        "models/patchcore_a/synthetic/tiles/memory_bank.safetensors",
        "models/patchcore_a/synthetic/tiles/config.json",
        "models/patchcore_a/synthetic/tiles/loss.parquet",
        "models/patchcore_a/synthetic/tiles/metadata.json",
        "scores/patchcore_a/synthetic/tiles.parquet",
        "scores/patchcore_a/synthetic/tiles.maps.safetensors",
        "scores/patchcore_a/synthetic/train/tiles.parquet",
        "metrics/patchcore_a/synthetic/tiles.parquet",
    }
    assert table.stat().st_mtime_ns > table_before
    assert "widget" in table.read_text()


def test_single_category_target_builds_only_that_category(tmp_path, weights_root):
    write_config(tmp_path, small_config(weights_root))
    snakemake(tmp_path, "results/metrics/patchcore_a/synthetic/widget.parquet")
    assert (tmp_path / "results/metrics/patchcore_a/synthetic/widget.parquet").exists()
    built = {p.name for p in (tmp_path / "results/models/patchcore_a/synthetic").iterdir()}
    assert built == {"widget"}
    assert not (tmp_path / "results/models/patchcore_b").exists()


def test_category_filter_from_the_command_line(tmp_path, weights_root):
    write_config(tmp_path, small_config(weights_root))
    result = snakemake(tmp_path, "--dry-run", "--config", "categories=[tiles]")
    jobs = planned_jobs(result.stdout)
    evaluated = {w for rule, w in jobs if rule == "evaluate"}
    assert evaluated and all("category=tiles" in w for w in evaluated)
    # The per-dataset model still learns every category of the dataset: the filter
    # narrows what is evaluated, not what a dataset-level model is.
    trained = {w for rule, w in jobs if rule == "train"}
    assert "method=patchcore_mc, dataset=synthetic, category=all" in trained
    assert "dataset=synthetic, category=widget" in {w for rule, w in jobs if rule == "manifest"}


def test_failed_category_leaves_other_categories_intact(tmp_path, weights_root):
    write_config(tmp_path, small_config(weights_root))
    snakemake(tmp_path, "results/data/synthetic/tiles.parquet")
    manifest = pd.read_parquet(tmp_path / "results/data/synthetic/tiles.parquet")
    # An image damaged after the manifest was checked (a flaky file system, a
    # half-finished copy): that category's training must fail, alone.
    broken = manifest[(manifest["category"] == "tiles") & (manifest["split"] == "train")]
    path = tmp_path / broken["image_path"].iloc[0]
    path.write_bytes(path.read_bytes()[:100])
    targets = [f"results/metrics/{m}/synthetic/{c}.parquet" for m in ("patchcore_a", "patchcore_b")
               for c in ("tiles", "widget")]
    result = snakemake(tmp_path, "--keep-going", *targets, check=False)
    assert result.returncode != 0
    log = (tmp_path / "logs/train/patchcore_a/synthetic/tiles.log").read_text()
    # The job names the changed file and the command that rebuilds its category.
    assert str(broken["image_path"].iloc[0]) in log
    assert "snakemake --forcerun results/data/synthetic/tiles.parquet" in log
    for method in ("patchcore_a", "patchcore_b"):
        metrics = pd.read_parquet(tmp_path / f"results/metrics/{method}/synthetic/widget.parquet")
        assert metrics["i_auroc"].notna().all()
        assert not (tmp_path / f"results/models/{method}/synthetic/tiles/metadata.json").exists()
    # Rebuilding the manifest as told finds the truncated file itself, naming it.
    rebuilt = snakemake(tmp_path, "--forcerun", "results/data/synthetic/tiles.parquet",
                        "results/data/synthetic/tiles.parquet", check=False)
    assert rebuilt.returncode != 0
    assert str(broken["image_path"].iloc[0]) in (tmp_path / "logs/data/synthetic/tiles.log"
                                                 ).read_text()


def patchcore_only(weights_root: Path, categories: list[str]) -> dict:
    config = small_config(weights_root)
    config["methods"] = {"patchcore_a": config["methods"]["patchcore_a"]}
    config["method_grids"] = {}
    config["datasets"]["synthetic"]["categories"] = categories
    return config


def test_adding_a_category_builds_only_that_category(tmp_path, weights_root):
    write_config(tmp_path, patchcore_only(weights_root, ["tiles"]))
    snakemake(tmp_path)
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "results").rglob("*")
              if p.is_file() and ("tiles" in p.name or "/tiles/" in str(p))}
    assert any("models" in str(p) for p in before)
    write_config(tmp_path, patchcore_only(weights_root, ["tiles", "widget"]))
    planned = planned_jobs(snakemake(tmp_path, "--dry-run").stdout)
    assert {(rule, w) for rule, w in planned if "category=tiles" in w} == set()
    assert ("train", "method=patchcore_a, dataset=synthetic, category=widget") in planned
    snakemake(tmp_path)
    after = {p: p.stat().st_mtime_ns for p in before}
    assert after == before  # not one file of the existing category was rewritten
    assert (tmp_path / "results/metrics/patchcore_a/synthetic/widget.parquet").exists()
    assert "widget" in (tmp_path / "results/tables/small.md").read_text()


def test_a_category_folder_with_a_space_fails_at_dag_build(tmp_path, weights_root, make_mvtec):
    make_mvtec(tmp_path / "data", "good_one")
    make_mvtec(tmp_path / "data", "cat B")
    config = patchcore_only(weights_root, ["tiles"])
    config["datasets"] = {"folder": {"kind": "folder", "root": str(tmp_path / "data"),
                                     "image_size": 64}}
    write_config(tmp_path, config)
    result = snakemake(tmp_path, "--dry-run", check=False)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert str(tmp_path / "data" / "cat B") in out and "letters, digits" in out


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda c: c["datasets"]["synthetic"].update(image_size="big"), "image_size"),
        (lambda c: c["methods"]["patchcore_a"].update(kind="nope"), "methods.patchcore_a.kind"),
        (lambda c: c["methods"]["patchcore_a"].update(coreset_ratio="x"),
         "methods.patchcore_a.coreset_ratio"),
        (lambda c: c["datasets"]["synthetic"].update(kind="nope"), "datasets.synthetic"),
        (lambda c: c.update(unknown_key=1), "unknown_key"),
        (lambda c: c["methods"]["patchcore_a"].update(coreset_ratio=-0.5),
         "methods.patchcore_a.coreset_ratio: must be > 0, got -0.5"),
        (lambda c: c["methods"]["patchcore_a"].update(layers=[9]), "methods.patchcore_a.layers"),
        (lambda c: c["methods"]["li"].update(epochs=0), "methods.li.epochs: must be >= 1"),
        (lambda c: c["methods"]["patchcore_a"].update(backbone="resnet_9000"),
         "methods.patchcore_a.backbone"),
    ],
    ids=["schema-type", "method-kind", "method-param", "dataset-kind", "schema-extra-key",
         "coreset-range", "layer-index", "epochs-zero", "unknown-backbone"],
)
def test_bad_config_fails_at_dag_build_naming_the_key(tmp_path, weights_root, mutate, message):
    config = small_config(weights_root)
    mutate(config)
    write_config(tmp_path, config)
    result = snakemake(tmp_path, "--dry-run", check=False)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(
    ("experiment", "categories", "models", "inferences", "variants", "extra"),
    # Per category: the variants, the models they share (train jobs) and the
    # inferences they share. latent_inversion: 50 variants (2 + 3 + 6 + 6 + 6 + 27
    # reconstruction points) share one model and one inference per distinct
    # (S, mode, start): S in {2, 3, 4, 5, 10, 50, 100, 1000} plus the 27
    # reconstruction points. esm: sgm's model and esm's, shared by esm_sigma and
    # the Table 5 ablations (score settings of esm_sigma). Seeded, three runs of
    # everything but sgm: each seed's ablations still share its esm_sigma inference.
    [("patchcore", 15 + 12 + 6, 1, 1, 2, ()), ("latent_inversion", 15 + 12, 1, 8 + 27, 50, ()),
     ("esm", 15 + 12 + 6, 2, 3, 6, ()),
     ("esm", 15 + 12 + 6, 1 + 3, 1 + 3 * 2, 1 + 3 * 5,
      ("--config", "seeds={" + ", ".join(
          f"{v}: [0, 1, 2]" for v in ("esm", "esm_sigma", "esm_sigma_cos_re",
                                      "esm_sigma_cos_re_u", "esm_sigma_cos_re_kl")) + "}"))],
    ids=["patchcore", "latent_inversion", "esm", "esm-seeds"],
)
def test_reproduction_config_dry_runs_the_full_dag(tmp_path, experiment, categories, models,
                                                   inferences, variants, extra):
    result = snakemake(tmp_path, "--dry-run", "--configfile",
                       str(REPO / f"config/experiments/{experiment}.yaml"), *extra)
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", result.stdout, flags=re.M))
    assert int(counts["train"]) == models * categories
    assert int(counts["infer"]) == inferences * categories
    assert int(counts["evaluate"]) == variants * categories
    assert int(counts["build_tables"]) == 1


def test_lint_is_clean():
    result = subprocess.run([sys.executable, "-m", "snakemake", "--lint", "-s",
                             str(REPO / "Snakefile"), "-d", str(REPO)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
