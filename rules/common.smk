# Config validation, the plan of the DAG (diffad.plan) and one-line adapters from a
# job's wildcards to it: every decision lives in the library, unit-tested there.
from snakemake.utils import validate

from diffad.plan import Plan

validate(config, schema="../config/schema/config.schema.yaml")
# Resolved once, at DAG build: a bad setting fails here, its config key named.
PLAN = Plan.from_config(config)
PATHS = PLAN.paths


wildcard_constraints:
    **PLAN.wildcard_constraints(),


def get_dataset_params(w):
    return PLAN.dataset_params(w.dataset, w.get("category"))


def get_download(w):
    return PLAN.download(w.dataset)


def get_captioner(w):
    return PLAN.captioner_params(w.captioner)


def get_captioner_env(w):
    return f"../envs/{PLAN.captioner_env(w.captioner)}"


def get_captioner_inputs(w):
    return PLAN.captioner_inputs(w.captioner, w.dataset, w.category)


def get_autoencoder(w):
    return PLAN.autoencoder_params(w.autoencoder)


def get_autoencoder_inputs(w):
    return PLAN.autoencoder_inputs(w.autoencoder, w.dataset, w.category)


def get_train_inputs(w):
    return PLAN.train_inputs(w.method, w.dataset, w.category)


def get_training_params(w):
    return PLAN.rerun_params(w.method, w.category, "train")


def get_infer_inputs(w):
    return PLAN.infer_inputs(w.method, w.dataset, w.category)


def get_inference_params(w):
    return PLAN.rerun_params(w.method, w.category, "train", "infer")


def get_evaluate_inputs(w):
    return PLAN.evaluate_inputs(w.method, w.dataset, w.category)


def get_score_params(w):
    return PLAN.rerun_params(w.method, w.category, "train", "infer", "score")


def get_caption_tables(w):
    return PLAN.caption_tables(w.captioner, w.dataset)


def get_image_size(w):
    return PLAN.image_size(w.dataset)


def get_train_scores(w):
    return PLAN.train_scores(w.method)
