"""Rehearsals: the settings, the rehearsal plan of every reproduction, the datasets written
in their published layouts, the real architectures that replace pretrained sources, and
one rehearsal run end to end with its cost table."""

from __future__ import annotations

import copy
from pathlib import Path

import pandas as pd
import pytest
import yaml
from snakemake_runs import snakemake
from test_plan import ESM, LI, plan_of, small

from diffad.data import build_manifest
from diffad.data.images import image_size
from diffad.data.layouts import PUBLISHED, published_size, write_layout
from diffad.errors import ConfigError
from diffad.methods import params_of
from diffad.plan import Plan
from diffad.plan.cost import COLUMNS
from diffad.plan.rehearsal import Rehearsal, code_path, representatives
from diffad.weights import WeightSource, register_source, weight_source
from diffad.weights.rehearsal import FACTORIES, SUBSTITUTES, rehearsal_source

REPO = Path(__file__).resolve().parents[1]
ESM_PER_CATEGORY = yaml.safe_load((REPO / "config/experiments/esm.yaml").read_text())[
    "methods"]["esm"]["per_category"]
# VLMDiff's rehearsal plan: test_vlmdiffs_rehearsal_plan_builds (its captioners' configs
# come from the hub, so it does not run here).
REPRODUCTIONS = ["patchcore", "latent_inversion", "esm", "sd_img2img"]


def reproduction(name: str, rehearsal=True) -> dict:
    config = yaml.safe_load((REPO / f"config/experiments/{name}.yaml").read_text())
    config["rehearsal"] = rehearsal
    return config


# ------------------------------------------------------------------ settings


@pytest.mark.parametrize("value", [False, None, "false", {"enabled": False, "steps": 3}])
def test_a_real_run_has_no_rehearsal(value):
    assert Rehearsal.of({"rehearsal": value}) is None
    assert Rehearsal.of({}) is None


def test_rehearsal_settings_from_the_command_line_or_a_block():
    assert Rehearsal.of({"rehearsal": "true"}) == Rehearsal.of({"rehearsal": True}) == Rehearsal()
    knobs = Rehearsal.of({"rehearsal": {"steps": 3, "categories": 2}})
    assert (knobs.steps, knobs.categories, knobs.train_images) == (3, 2, 4)
    with pytest.raises(ConfigError, match=r"rehearsal: unknown key\(s\) \['step'\]"):
        Rehearsal.of({"rehearsal": {"step": 3}})


# ------------------------------------------------------------------ the plan


@pytest.mark.parametrize("name", REPRODUCTIONS)
def test_every_reproduction_rehearses_each_code_path_once(name):
    plan = plan_of(reproduction(name))
    full = plan_of(reproduction(name, rehearsal=False))
    assert plan.rehearsal == Rehearsal() and plan.table_name == f"{name}.rehearsal"
    # Apart from the real run: its own results, logs, datasets and weights.
    assert all(p.startswith("results/rehearsal/") for p in plan.final_outputs())
    assert plan.paths.log("train", "method").startswith("logs/rehearsal/")
    assert plan.runtime_settings()["weights_dir"].endswith("/rehearsal")
    for dataset, entry in plan.datasets.items():
        assert entry["root"] == f"results/rehearsal/datasets/{dataset}"
        assert plan.categories(dataset) == full.full_categories[dataset][:1]
    # One variant per code path of the full run, each of the full run's paths once, and
    # every dataset read by its own code at least once.
    chosen = representatives(full.variants)
    assert set(plan.variants.resolved) == set(chosen.values())
    assert {code_path(full.variants.resolved[n]) for n in plan.variants.resolved} == {
        code_path(r) for r in full.variants.resolved.values()}
    assert {d for d, _ in plan.jobs()["manifest"]} == set(full.datasets)
    # Trainings cut to two steps at a batch that fits; the estimate scales to the full run.
    for variant in plan.variants.resolved.values():
        if "max_steps" in variant:
            assert variant["max_steps"] == 2 and variant.get("batch_size", 1) <= 16
    assert plan.full.jobs() == full.jobs()
    assert set(plan.cost_files()) == {"md", "csv"}
    assert set(full.cost_files()) == set()


def test_inference_runs_the_fewest_evaluations_of_its_code_path():
    """ESM from T_d = 1 (every per-category T_d too), img2img on a 10-step schedule that
    still runs a step at the strength figure's 0.1; the estimate scales back by NFE."""
    esm = plan_of(reproduction("esm"))
    sigma = esm.methods["esm_sigma"]
    assert sigma["t_d"] == 1 and {o["t_d"] for o in sigma["per_category"].values()} == {1}
    assert esm.kind("esm_sigma").nfe(params_of(sigma)) == 2 + 2  # two streams, the MLE maps
    sd = plan_of(reproduction("sd_img2img"))
    assert params_of(sd.methods["sd_img2img_notebook"]).steps == 10
    assert params_of(sd.methods["pixel_ddpm"]).sample_steps == 1
    # The strength figure, minutes of SD at 512 px each, once per kind that draws it.
    full = plan_of(reproduction("sd_img2img", rehearsal=False))
    assert len(full.strength_variants) > 2
    assert sorted(sd.kind(m).kind for m in sd.strength_variants) == ["latent_unet",
                                                                     "sd_img2img"]
    configured = plan_of(reproduction("esm", rehearsal={"fewest_evaluations": False}))
    assert configured.methods["esm_sigma"]["per_category"] == ESM_PER_CATEGORY


def test_the_representative_of_a_code_path_costs_fewest_evaluations():
    plan = plan_of(small())
    chosen = representatives(plan.variants)
    # li, its run-settings twin and the steps grid differ in numbers only: one path,
    # rehearsed by its cheapest sampler; a score setting (nll) is a path of its own.
    path = {chosen[v] for v in ("li", "li_ckpt", "li_s3", "li_s4")}
    assert len(path) == 1
    nfe = {v: plan.kind(v).nfe(params_of(plan.methods[v]))
           for v in ("li", "li_ckpt", "li_s3", "li_s4")}
    assert nfe[path.pop()] == min(nfe.values())
    assert chosen["li_nll"] == "li_nll"
    assert chosen["patchcore_a"] == chosen["patchcore_b"] == "patchcore_a"
    assert chosen["patchcore_mc"] == "patchcore_mc"  # multi-class: a flag, other code
    settings = {"variants": "all", "steps": 1}
    plan = plan_of(small(rehearsal=settings))
    assert len(plan.variants.resolved) == len(plan.full.variants.resolved)
    assert {v.get("max_steps") for v in plan.variants.resolved.values()
            if v["kind"] in ("latent_inversion", "esm")} == {1}
    assert ESM["epochs"] and LI["epochs"]  # epochs stay: max_steps stops the trainer first


def test_a_broken_real_size_setting_fails_the_rehearsal_naming_it():
    config = reproduction("vlmdiff")
    config["autoencoders"] = {"sd15_ft": {"resolution": 250}}
    with pytest.raises(ConfigError, match=r"autoencoders\.sd15_ft.*resolution"):
        plan_of(config)
    config = reproduction("sd_img2img")
    config["methods"]["sd_img2img_std"]["sd_resolution"] = 500
    with pytest.raises(ConfigError, match=r"methods\.sd_img2img_std.*sd_resolution"):
        plan_of(config)


# ------------------------------------------------------------------ layouts


@pytest.mark.parametrize("kind", sorted(PUBLISHED))
def test_a_published_layout_is_read_by_the_dataset_code(kind, tmp_path):
    category = next(iter(PUBLISHED[kind]))
    write_layout(kind, tmp_path, [category], n_train=2, n_test=2)
    manifest = build_manifest(kind, {"kind": kind, "root": str(tmp_path)}, category,
                              progress=False)
    assert (manifest["split"] == "train").sum() == 2
    test = manifest[manifest["split"] == "test"]
    assert sorted(test["label"]) == [0, 1]
    anomalous = test[test["label"] == 1].iloc[0]
    assert anomalous["mask_path"] and Path(anomalous["mask_path"]).is_file()
    size = published_size(kind, category)
    assert image_size(manifest["image_path"].iloc[0]) == (size.width, size.height)


def test_a_kind_without_a_published_layout_cannot_be_rehearsed(tmp_path, make_mvtec):
    with pytest.raises(ValueError, match="no published layout of dataset kind 'folder'"):
        write_layout("folder", tmp_path, ["a"], 1, 2)
    config = copy.deepcopy(small())
    config["datasets"]["mine"] = {"kind": "folder", "root": str(make_mvtec(tmp_path)),
                                  "image_size": 64}
    config["rehearsal"] = True
    with pytest.raises(ConfigError, match=r"datasets\.mine: a rehearsal writes"):
        Plan.from_config(config)


# ------------------------------------------------------------------ weights


def test_a_source_without_an_architecture_fails_the_rehearsal_naming_it(registry):
    register_source(WeightSource(name="local_vae", library="diffusers", repo_id="/models/vae",
                                 cls="AutoencoderKL"))
    with pytest.raises(ConfigError, match="weights 'local_vae'.*no real architecture"):
        rehearsal_source("local_vae")


def test_pretrained_sources_become_their_real_architectures():
    timm = rehearsal_source("wide_resnet50_2")
    assert timm.random and timm.repo_id is None and timm.model.startswith("wide_resnet50_2")
    assert rehearsal_source("sd15").factory == FACTORIES["sd15"]
    # Captioners: the repo's own config and code, random weights; one that does not fit
    # 24 GB in float32 is rehearsed on its family's largest member with the same code.
    deepseek = rehearsal_source("deepseek_vl_1_3b")
    assert deepseek.random and deepseek.repo_id == weight_source("deepseek_vl_1_3b").repo_id
    internvl = rehearsal_source("internvl2_8b")
    assert (internvl.repo_id, internvl.random, internvl.trust_remote_code) == (
        SUBSTITUTES["internvl2_8b"][0], True, True)
    assert "in place of OpenGVLab/InternVL2-8B" in internvl.description
    assert rehearsal_source("blip2_flan_t5_xxl").repo_id == "Salesforce/blip2-flan-t5-xl"


def test_vlmdiffs_rehearsal_plan_builds():
    """Every captioner has an architecture now: the DAG builds; each of its code paths once,
    on one dataset each, sharing what the same code would train twice, and each captioner
    and autoencoder of the full run made once."""
    plan = plan_of(reproduction("vlmdiff"))
    full = plan_of(reproduction("vlmdiff", rehearsal=False))
    assert set(plan.variants.resolved) == set(representatives(full.variants).values())
    assert {name for (name,) in plan.jobs()["fetch_weights"]} >= {"internvl2_8b",
                                                                  "blip2_flan_t5_xxl"}
    jobs = plan.jobs()
    # The full run's 35 trainings -> one per distinct training code: with captions or
    # without (DiAD), one model per dataset or per COCO-AD fold.
    assert len(full.jobs()["train"]) == 35 and len(jobs["train"]) == 4
    # Which VLM wrote the captions, which autoencoder encodes: data to the same training.
    assert code_path(full.variants.resolved["vlmdiff_blip2"]) == code_path(
        full.variants.resolved["vlmdiff_e100"]) == code_path(
        full.variants.resolved["vlmdiff_ae_pretrained"])
    # Captions at inference and the detectors are settings of inference and scoring: they
    # share the main variant's training (and the detectors its inference too).
    assert plan.variants.trained_by["vlmdiff_capinf"] == "vlmdiff_e300"
    assert {plan.variants.inferred_by[m] for m in plan.methods
            if m.startswith("vlmdiff_fx_")} == {"vlmdiff_e300"}
    # Inference: two DDIM steps (501, 1) from t = 999, scaled back to the configured 10.
    from diffad.methods.vlmdiff import denoising_grid
    main = params_of(plan.methods["vlmdiff_e300"])
    assert denoising_grid(main) == [501, 1] and plan.kind("vlmdiff_e300").nfe(main) == 2
    # Each captioner model once (two prompts of one model are one path), each autoencoder
    # recipe once (SD's own, which no kept variant reads, as a target of its own), and
    # every dataset's manifest read.
    def models(stage_jobs, of):
        return {(of[n].family, of[n].weights) for n, _, _ in stage_jobs}
    assert models(jobs["captions"], plan.captioners) == models(full.jobs()["captions"],
                                                               full.captioners)
    assert {n for n, _, _ in jobs["autoencoder"]} == {"sd15", "sd15_ft"}
    assert {d for d, _ in jobs["manifest"]} == set(full.datasets)
    assert set(plan.artefact_targets()) <= set(plan.final_outputs())


def test_datasets_are_rehearsed_once_per_image_size():
    """A code path runs on one dataset per image size of its datasets (the one its
    training leader runs on where it can share the job)."""
    config = reproduction("vlmdiff")
    config["datasets"]["visa"]["image_size"] = 512
    plan = plan_of(config)
    full = plan.full
    for name, entry in plan.methods.items():
        group = [v for v, rep in representatives(full.variants).items() if rep == name]
        sizes = {full.image_size(d) for v in group
                 for d in full.variants.resolved[v].get("datasets") or full.datasets}
        assert sorted(plan.image_size(d) for d in entry["datasets"]) == sorted(sizes)
    assert plan.methods["vlmdiff_e300"]["datasets"] == ["mvtec_ad", "visa"]
    assert plan.methods["vlmdiff_capinf"]["datasets"] == ["mvtec_ad", "visa"]  # shares
    everything = plan_of(reproduction("vlmdiff", rehearsal={"variants": "all"}))
    assert everything.methods["vlmdiff_e100"]["datasets"] == ["mvtec_ad", "visa", "real_iad"]


def test_a_dataset_not_rehearsed_is_estimated_from_one_of_its_image_size(tmp_path,
                                                                          monkeypatch):
    """VLMDiff's main path runs on MVTec AD alone in the rehearsal; VisA and Real-IAD, at
    the same 256 px, are estimated from it, and the table says so."""
    from diffad.io import write_parquet
    from diffad.plan.cost import _images, cost_table

    monkeypatch.chdir(tmp_path)
    plan = plan_of(reproduction("vlmdiff"))
    assert plan.methods["vlmdiff_e300"]["datasets"] == ["mvtec_ad"]
    (category,) = plan.categories("mvtec_ad")
    metrics = plan.paths.format(plan.paths.metrics, method="vlmdiff_e300",
                                dataset="mvtec_ad", category=category)
    write_parquet(pd.DataFrame([{"latency_ms": 500.0, "params": 1.3e9,
                                 "infer_peak_rss_mb": 9000.0}]), metrics)
    table = cost_table(plan).set_index(["stage", "variant", "dataset"])
    own = table.loc[("infer", "vlmdiff_e300", "mvtec_ad")]
    # Measured at 2 DDIM steps, scaled to the configured 10.
    assert own["note"] == "NFE 10 vs 2 rehearsed"
    assert own["unit_cost"] == pytest.approx(2500.0)
    visa = table.loc[("infer", "vlmdiff_e100", "visa")]
    assert visa["rehearsed_as"] == "vlmdiff_e300"
    assert visa["note"] == "measured on mvtec_ad; NFE 10 vs 2 rehearsed"
    images = sum(_images(plan.full, "visa", c, "test")
                 for c in plan.full.full_categories["visa"])
    assert visa["hours"] == pytest.approx(2500.0 * images / 3.6e6)
    # The paper's prompt is InternVL2 asked another question: estimated from the authors'
    # prompt's captions, on the dataset they were measured on.
    captions = plan.paths.format(plan.paths.captions, captioner="internvl2_8b_long",
                                 dataset="mvtec_ad", category=category)
    write_parquet(pd.DataFrame({"seconds": [40.0, 60.0]}), captions)
    table = cost_table(plan).set_index(["stage", "variant", "dataset"])
    paper = table.loc[("captions", "internvl2_8b", "visa")]
    assert paper["rehearsed_as"] == "internvl2_8b_long" and paper["unit_cost"] == 50.0
    assert paper["note"].endswith("; measured on mvtec_ad")
    assert "InternVL2-2B" in paper["note"]  # the substitute that fits, named
    # A training of the 4 rehearsal images: 4 x 4 accumulated samples per step, scaled per
    # sample; the memory of the configured batch of 12 was not measured, and it says so.
    import json
    model = Path(plan.model("vlmdiff_e300", "mvtec_ad", "all"))
    model.parent.mkdir(parents=True, exist_ok=True)
    model.write_text(json.dumps({"s_per_step": 26.0, "steps": 2, "n_train": 4,
                                 "params": 1.4e9, "peak_rss_mb": 19700.0}))
    table = cost_table(plan).set_index(["stage", "variant", "dataset"])
    train = table.loc[("train", "vlmdiff_e100", "real_iad")]
    assert train["unit_cost"] == pytest.approx(26.0 / 16)
    assert train["note"] == ("measured on mvtec_ad; 2 steps of 16 samples measured; batch 4 "
                             "of the configured 12: peak memory at batch 4")
    # An autoencoder finetuned per COCO-AD fold stands for Real-IAD's, same code and size.
    folder = plan.autoencoder_model("sd15_ft", "coco_ad", "split_0")
    Path(folder).parent.mkdir(parents=True, exist_ok=True)
    Path(folder).write_text(json.dumps({"s_per_step": 70.0, "steps": 2, "n_train": 4,
                                        "params": 8.4e7, "peak_rss_mb": 5500.0}))
    table = cost_table(plan).set_index(["stage", "variant", "dataset"])
    real_iad = table.loc[("autoencoder", "sd15_ft", "real_iad")]
    assert real_iad["note"] == "measured on coco_ad"
    assert real_iad["unit_cost"] == table.loc[("autoencoder", "sd15_ft", "coco_ad"),
                                              "unit_cost"].iloc[0] > 0


# ------------------------------------------------------------------ end to end


def test_a_rehearsal_runs_end_to_end_and_writes_its_cost(tmp_path):
    """PatchCore's reproduction on MVTec AD and MPDD in their published layouts at their real
    sizes, WideResNet-50 with random weights: results, title and cost table. (VisA's
    1.5-megapixel images are left out to keep the suite's time.)"""
    workdir = tmp_path / "run"
    (workdir / "config").mkdir(parents=True)
    config = reproduction("patchcore", rehearsal={"train_images": 2, "test_images": 2})
    del config["datasets"]["visa"]
    config["reference_dir"] = str(REPO / "config/reference")
    (workdir / "config/config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(workdir)
    root = workdir / "results/rehearsal"
    assert not (workdir / "results/tables").exists()  # a real run's results: untouched
    table = (root / "tables/patchcore.rehearsal.md").read_text()
    assert "patchcore.rehearsal" in table
    cost = pd.read_csv(root / "cost.csv")
    assert list(cost.columns) == COLUMNS
    assert set(cost["stage"]) >= {"train", "infer"}
    train = cost[cost["stage"] == "train"]
    # The full run: every category of MVTec AD (15) and MPDD (6).
    assert train["jobs"].sum() == 21 and (train["hours"] > 0).all()
    assert (cost["peak_rss_mb"] > 0).all()
    assert "hours" in (root / "cost.md").read_text()
    assert "estimate" in (result.stdout + result.stderr).lower()


def test_the_estimate_scales_each_category_by_its_own_evaluations(tmp_path, monkeypatch):
    """ESM's T_d differs by class (Tables 6-8): a rehearsed latency at T_d = 1 scales to
    each category's own NFE, not to the variant's default T_d."""
    from diffad.io import write_parquet
    from diffad.plan.cost import _images, cost_table

    monkeypatch.chdir(tmp_path)
    plan = plan_of(reproduction("esm"))
    (category,) = plan.categories("mpdd")
    metrics = plan.paths.format(plan.paths.metrics, method="esm", dataset="mpdd",
                                category=category)
    write_parquet(pd.DataFrame([{"latency_ms": 300.0, "params": 2.4e8,
                                 "infer_peak_rss_mb": 4000.0}]), metrics)
    table = cost_table(plan)
    row = table[(table["stage"] == "infer") & (table["variant"] == "esm")].iloc[0]
    full = plan.full
    nfe = {c: int(ESM_PER_CATEGORY[c]["t_d"]) + 2 for c in full.full_categories["mpdd"]}
    rehearsed = 1 + 2  # T_d = 1 and the two variance evaluations of the MLE maps
    expected_ms = sum(300.0 * nfe[c] / rehearsed * _images(full, "mpdd", c, "test")
                      for c in nfe)
    assert row["hours"] == pytest.approx(expected_ms / 3.6e6)
    assert row["note"] == f"NFE {min(nfe.values())}-{max(nfe.values())} by category vs 3 rehearsed"
