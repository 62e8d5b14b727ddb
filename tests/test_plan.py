"""The DAG's decisions, in-process: job counts, sharing, inputs, resources, paths and bad
configs, from :class:`diffad.plan.Plan` without a Snakemake process (milliseconds each).

One test runs snakemake's dry run on a reproduction config and checks that its jobs
are the plan's, so that what is tested here is what the rules do.
"""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from diffad.errors import ConfigError, DatasetError
from diffad.methods import MethodParams, train
from diffad.paths import PATHS, Paths
from diffad.plan import Plan

REPO = Path(__file__).resolve().parents[1]
SCHEMA = str(REPO / "config" / "schema" / "config.schema.yaml")

ESM = {"kind": "esm", "resolution": 32, "block_out_channels": [16, 32], "layers_per_block": 1,
       "attention_levels": 0, "train_timesteps": 100, "epochs": 2, "t_d": 5,
       "feature_backbone": "tf_efficientnet_lite0", "feature_layers": [1, 2]}
LI = {"kind": "latent_inversion", "backbone": "tf_efficientnet_lite0",
      "block_out_channels": [32, 64], "layers_per_block": 1, "epochs": 3, "batch_size": 8}


def small(**overrides) -> dict:
    """A config of every sharing case: two PatchCore trainings, a multi-class one, latent
    inversion variants sharing one model and one inference, a per-category ESM."""
    config = {
        "experiment": "small",
        "reference_dir": str(REPO / "config" / "reference"),
        "datasets": {"synthetic": {"kind": "synthetic", "root": "data/synthetic",
                                   "image_size": 64}},
        "methods": {
            "patchcore_a": {"kind": "patchcore", "backbone": "tf_efficientnet_lite0",
                            "coreset_ratio": 0.5},
            "patchcore_b": {"kind": "patchcore", "backbone": "tf_efficientnet_lite0",
                            "coreset_ratio": 0.25},
            "patchcore_mc": {"kind": "patchcore", "backbone": "tf_efficientnet_lite0",
                             "coreset_ratio": 0.25, "multi_class": True},
            "li": {**LI},
            "li_nll": {**LI, "score": "nll"},  # a score setting: li's inference
            "li_ckpt": {**LI, "checkpoint_every": 7, "infer_batch_size": 3},  # run settings
            "esm_sigma": {**ESM, "sampler": "esm_sigma", "per_category": {"widget": {"t_d": 3}}},
        },
        "method_grids": {"li_steps": {"name": "li_s{steps}", "base": {**LI},
                                      "vary": {"steps": [3, 4]}}},
        "runtime": {"weights_dir": "/weights", "seed": 0},
    }
    config.update(overrides)
    return copy.deepcopy(config)


def plan_of(config: dict) -> Plan:
    """What the DAG build does: validate against the schema (defaults filled), resolve."""
    config = copy.deepcopy(config)
    validate(config, SCHEMA)
    plan = Plan.from_config(config)
    plan.grid  # noqa: B018 (the DAG build lists every dataset's categories)
    return plan


def experiment(name: str, **overrides) -> Plan:
    config = yaml.safe_load((REPO / f"config/experiments/{name}.yaml").read_text())
    config.update(overrides)
    return plan_of(config)


def counts(plan: Plan) -> dict[str, int]:
    return {rule: len(jobs) for rule, jobs in plan.jobs().items() if jobs}


# ------------------------------------------------------------------ sharing


def test_variants_share_the_jobs_their_tiers_allow():
    plan = plan_of(small())
    trained, inferred = plan.variants.trained_by, plan.variants.inferred_by
    assert trained["patchcore_b"] == "patchcore_b" and trained["patchcore_mc"] == "patchcore_mc"
    # infer settings share a model, score settings an inference, run settings both
    assert {trained[v] for v in ("li", "li_nll", "li_ckpt", "li_s3", "li_s4")} == {"li"}
    assert inferred["li_nll"] == inferred["li_ckpt"] == "li"
    assert inferred["li_s3"] == "li_s3"
    jobs = plan.jobs()
    assert [j for j in jobs["train"] if j[0].startswith("li")] == [
        ("li", "synthetic", "tiles"), ("li", "synthetic", "widget")]
    assert {j[0] for j in jobs["infer"] if j[0].startswith("li")} == {"li", "li_s3", "li_s4"}
    assert len(jobs["evaluate"]) == len(plan.methods) * 2


def test_run_settings_never_rerun_a_job_but_reach_it():
    plan = plan_of(small())
    for tiers in (("train",), ("train", "infer"), ("train", "infer", "score")):
        assert plan.rerun_params("li_ckpt", "tiles", *tiers) == plan.rerun_params(
            "li", "tiles", *tiers)
    assert "checkpoint_every" not in plan.rerun_params("li", "tiles", "train")
    job = plan.job("li_ckpt", "synthetic", "tiles", "train", "infer")
    assert job.params["checkpoint_every"] == 7 and job.params["infer_batch_size"] == 3
    assert "score" not in job.params  # a score setting never reaches inference
    assert job.image_size == 64 and job.runtime["cache_dir"] == "results/cache"
    # A model folder is its train tier; the job adds the rest.
    assert "steps" not in plan.job("li", "synthetic", "tiles", "train").params


def test_a_multi_class_model_trains_on_every_category_even_when_filtered():
    plan = plan_of(small(categories=["tiles"]))
    assert plan.unit("patchcore_mc", "tiles") == "all"
    assert plan.model("patchcore_mc", "synthetic", "tiles") == (
        "results/models/patchcore_mc/synthetic/all/metadata.json")
    assert plan.train_inputs("patchcore_mc", "synthetic", "all")["manifests"] == [
        "results/data/synthetic/tiles.parquet", "results/data/synthetic/widget.parquet"]
    assert {c for _, _, c in plan.jobs()["evaluate"]} == {"tiles"}
    assert ("synthetic", "widget") in plan.jobs()["manifest"]
    assert plan.table_name == "small.partial-tiles"
    assert plan.coverage_note() == "synthetic: partial, 1 of 2 categories"


def test_per_category_settings_reach_only_that_category():
    plan = plan_of(small())
    assert plan.rerun_params("esm_sigma", "widget", "train", "infer")["t_d"] == 3
    assert plan.rerun_params("esm_sigma", "tiles", "train", "infer")["t_d"] == 5
    assert plan.rerun_params("esm_sigma", "widget", "train") == plan.rerun_params(
        "esm_sigma", "tiles", "train")


def test_outputs_of_a_score_variant_are_its_inference_owners():
    plan = plan_of(small())
    assert plan.evaluate_inputs("li_nll", "synthetic", "tiles") == {
        "scores": "results/scores/li/synthetic/tiles.parquet",
        "maps": "results/scores/li/synthetic/tiles.maps.safetensors",
        "train_scores": "results/scores/li/synthetic/train/tiles.parquet",
        "model": "results/models/li/synthetic/tiles/metadata.json"}
    assert plan.infer_inputs("li_s3", "synthetic", "tiles")["weights"] == [
        "/weights/tf_efficientnet_lite0/source.json"]


# ---------------------------------------------------- artefacts and upstream stages


def test_vlmdiff_reads_one_autoencoder_folder_and_every_categorys_captions():
    plan = experiment("vlmdiff")
    artefacts = plan.artefacts("vlmdiff_e300", "mvtec_ad", "all")
    assert artefacts["autoencoder"] == {"sd15_ft": ["results/models/autoencoder/sd15_ft/"
                                                    "mvtec_ad/all"]}
    assert len(artefacts["captions"]["internvl2_8b_long"]) == 15
    files = plan.train_inputs("vlmdiff_e300", "mvtec_ad", "all")["artefacts"]
    assert "results/models/autoencoder/sd15_ft/mvtec_ad/all/metadata.json" in files
    assert plan.autoencoder_inputs("sd15_ft", "mvtec_ad", "all")["weights"] == [
        "resources/weights/sd15/source.json", "resources/weights/vgg16/source.json"]
    assert "checkpoint_every" not in plan.autoencoder_params("sd15_ft")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # Per category: the variants' shared models and inferences. MVTec AD 15, VisA 12,
        # MPDD 6 categories.
        ("patchcore", {"train": 33, "infer": 33, "evaluate": 2 * 33, "manifest": 33}),
        # latent_inversion: 50 variants share one model and one inference per distinct
        # (S, mode, start): S in {2, 3, 4, 5, 10, 50, 100, 1000} plus 27 reconstruction
        # points.
        ("latent_inversion", {"train": 27, "infer": (8 + 27) * 27, "evaluate": 50 * 27}),
        # esm: sgm's model and esm's (shared by esm_sigma and the Table 5 ablations, which
        # score MPDD's 6 categories only).
        ("esm", {"train": 2 * 33, "infer": 3 * 33, "evaluate": 3 * 33 + 3 * 6}),
        # vlmdiff: autoencoders sd15_ft per dataset (per fold on COCO-AD) + sd15 as is on
        # Real-IAD; train captions by 3 captioners with the authors' prompt on MVTec AD
        # 15, VisA 12, Real-IAD 30, COCO-AD 4 folds, and InternVL2 with the paper's on
        # MVTec AD and VisA (the prompt ablation); test captions where text conditions
        # inference.
        ("vlmdiff", {"autoencoder": 1 + 1 + 2 + 4,
                     "captions": 3 * (15 + 12 + 30 + 4) + (15 + 12),
                     "test_captions": (15 + 12 + 30) + 3 * 4, "train": 2 * 7 + 5 + 4 * 4,
                     "infer": 8 * 15 + 8 * 12 + 6 * 30 + 4 * 4,
                     "evaluate": 13 * 15 + 8 * 12 + 11 * 30 + 4 * 4}),
        # sd_img2img on MVTec AD (15): 67 variants, 35 inferences and 5 models each; the
        # four shown variants that reconstruct by strength draw the strength figure.
        ("sd_img2img", {"train": 5 * 15, "infer": 31 * 15, "infer_with_strengths": 4 * 15,
                        "evaluate": 67 * 15}),
    ],
)
def test_reproduction_configs_plan_their_full_dags(name, expected):
    got = counts(experiment(name))
    assert {rule: got.get(rule, 0) for rule in expected} == expected
    assert got["build_tables"] == 1


def test_seeds_repeat_every_run_and_its_score_variants_share_each_inference():
    seeds = {v: [0, 1, 2] for v in ("esm", "esm_sigma", "esm_sigma_cos_re",
                                    "esm_sigma_cos_re_u", "esm_sigma_cos_re_kl")}
    got = counts(experiment("esm", seeds=seeds))
    assert got["train"] == (1 + 3) * 33 and got["infer"] == (1 + 3 * 2) * 33
    assert got["evaluate"] == (1 + 3 * 2) * 33 + 3 * 3 * 6  # the ablations: MPDD only


def test_internvl2_caption_jobs_run_in_the_environment_it_can_generate_in():
    plan = experiment("vlmdiff")
    assert plan.captioner_env("internvl2_8b_long") == "internvl.yaml"
    assert plan.captioner_env("blip2_long") == "torch.yaml"
    env = yaml.safe_load((REPO / "envs" / plan.captioner_env("internvl2_8b_long")).read_text())
    assert "transformers>=4.45,<4.52" in env["dependencies"]


# ---------------------------------------------------------------- resources


def test_resources_are_constants_unless_a_dataset_overrides_them():
    config = small()
    config["datasets"]["big"] = {"kind": "synthetic", "root": "data/big", "image_size": 64,
                                 "resources": {"train": {"mem_mb": 99000}}}
    plan = plan_of(config)
    train_resources = plan.resources("train")
    assert set(train_resources) == {"mem_mb", "runtime", "cpus_per_task", "gpu", "gpu_model"}
    assert train_resources["runtime"] == 480 and train_resources["gpu"] == 1
    mem = train_resources["mem_mb"]
    assert callable(mem)
    assert mem(type("W", (), {"dataset": "big"})) == 99000
    assert mem(type("W", (), {"dataset": "synthetic"})) == 32000
    assert plan.resources("infer")["mem_mb"] == 16000  # not overridden: a constant
    assert "gpu" not in plan.resources("evaluate")  # a CPU rule asks for no GPU
    assert plan.threads("train") == 8


# -------------------------------------------------------------------- paths


def test_every_results_path_is_defined_once_under_one_root():
    # No module of the library, rule or script spells a results path but diffad.paths.
    spelled = re.compile(r"[\"'`]results/(data|captions|models|scores|metrics|figures|tables)")
    offenders = [str(p.relative_to(REPO))
                 for p in [*(REPO / "src").rglob("*.py"), *(REPO / "rules").glob("*.smk"),
                           *(REPO / "workflow/scripts").glob("*.py"), REPO / "Snakefile"]
                 if p.name != "paths.py" and spelled.search(p.read_text())]
    assert offenders == []
    rehearsal = Paths(results="results/rehearsal", logs="logs/rehearsal")
    for name in ("manifest", "model", "scores", "metrics", "tables", "heatmaps"):
        assert getattr(rehearsal, name).startswith("results/rehearsal/")
        assert getattr(PATHS, name).startswith("results/") and not getattr(
            PATHS, name).startswith("results/rehearsal")
    assert rehearsal.log("train", "method") == "logs/rehearsal/train/{method}.log"
    plan = Plan.from_config(plan_of(small()).config, rehearsal)
    assert all(p.startswith("results/rehearsal/") for p in plan.final_outputs())


def test_common_smk_is_a_page_of_adapters():
    lines = (REPO / "rules/common.smk").read_text().splitlines()
    assert len(lines) < 80


# ------------------------------------------------------------ the contract


def test_a_field_without_a_tier_fails_where_it_is_declared():
    with pytest.raises(TypeError, match=r"Params\.depth: declare it with train\(\), infer\(\)"):
        class Params(MethodParams):  # noqa: F841
            width: int = train(4)
            depth: int = 3


def test_reconstruction_at_a_strength_is_validated():
    from diffad.methods import resolve_method
    from diffad.methods.base import AnomalyModel

    params = resolve_method("v", {"kind": "latent_unet"})
    from diffad.methods import params_of

    p = params_of(params)
    assert p.updated(strength=0.5).strength == 0.5
    with pytest.raises(Exception, match="strength"):
        p.updated(strength=1.5)
    assert AnomalyModel.reconstruct_images is not None


# ------------------------------------------------------------- bad configs


def broken(mutate) -> dict:
    config = small()
    mutate(config)
    return config


@pytest.mark.parametrize(
    ("mutate", "error", "message"),
    [
        (lambda c: c["datasets"]["synthetic"].update(image_size="big"), WorkflowError,
         "image_size"),
        (lambda c: c["methods"]["patchcore_a"].update(kind="nope"), ConfigError,
         "methods.patchcore_a.kind"),
        (lambda c: c["methods"]["patchcore_a"].update(coreset_ratio="x"), ConfigError,
         "methods.patchcore_a.coreset_ratio"),
        (lambda c: c["datasets"]["synthetic"].update(kind="nope"), ConfigError,
         "datasets.synthetic"),
        (lambda c: c.update(unknown_key=1), WorkflowError, "unknown_key"),
        (lambda c: c["methods"]["patchcore_a"].update(coreset_ratio=-0.5), ConfigError,
         "methods.patchcore_a.coreset_ratio: must be > 0, got -0.5"),
        (lambda c: c["methods"]["patchcore_a"].update(layers=[9]), ConfigError,
         "methods.patchcore_a.layers"),
        (lambda c: c["methods"]["li"].update(epochs=0), ConfigError,
         "methods.li.epochs: must be >= 1"),
        (lambda c: c["methods"]["patchcore_a"].update(backbone="resnet_9000"), ConfigError,
         "methods.patchcore_a.backbone"),
        (lambda c: c["methods"]["li"].update(checkpoint_every=0), ConfigError,
         "methods.li.checkpoint_every: must be >= 1"),
        (lambda c: c["methods"]["li"].update(datasets=["mvtec"]), ConfigError,
         "methods.li.datasets: ['mvtec'] are not configured"),
    ],
    ids=["schema-type", "method-kind", "method-param", "dataset-kind", "schema-extra-key",
         "coreset-range", "layer-index", "epochs-zero", "unknown-backbone", "run-setting",
         "unknown-dataset"],
)
def test_bad_config_fails_at_dag_build_naming_the_key(mutate, error, message):
    with pytest.raises(error) as caught:
        plan_of(broken(mutate))
    assert message in str(caught.value)


def test_a_category_folder_with_a_space_fails_at_dag_build(tmp_path, make_mvtec):
    make_mvtec(tmp_path / "data", "good_one")
    make_mvtec(tmp_path / "data", "cat B")
    config = small(datasets={"folder": {"kind": "folder", "root": str(tmp_path / "data"),
                                        "image_size": 64}})
    config["methods"] = {"pc": config["methods"]["patchcore_a"]}
    config["method_grids"] = {}
    with pytest.raises(DatasetError, match="letters, digits") as caught:
        plan_of(config)
    assert str(tmp_path / "data" / "cat B") in str(caught.value)


# -------------------------------------------- the rules do what the plan says


def test_snakemakes_dry_run_plans_the_jobs_of_the_plan(tmp_path):
    """The richest reproduction (every stage): snakemake's job counts are the plan's."""
    config = REPO / "config/experiments/vlmdiff.yaml"
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path),
         "--cores", "1", "--dry-run", "--configfile", str(config)],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    dry = {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)$", result.stdout, flags=re.M)}
    dry.pop("all"), dry.pop("total")
    assert dry == counts(experiment("vlmdiff"))
