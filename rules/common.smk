# Config validation, the (method, dataset, category) grid and the input functions.
import re
from pathlib import Path

from snakemake.utils import validate

from diffad.data import dataset_categories
from diffad.errors import ConfigError
from diffad.methods import (
    expand_method_grids,
    grid_points,
    method_class,
    resolve_method,
    training_params,
    training_variants,
    weight_names,
)
from diffad.stages import ALL_CATEGORIES

validate(config, schema="../config/schema/config.schema.yaml")

# Resolved once, at DAG build: an unknown kind or a bad parameter fails here,
# with its config path in the message, before any job starts.
GRID_POINTS = grid_points(config["method_grids"])
GRID_METHODS = expand_method_grids(config["method_grids"], GRID_POINTS)
CLASHES = sorted(set(GRID_METHODS) & set(config["methods"]))
if CLASHES:
    raise ConfigError(f"method_grids produce variants also named in methods: {CLASHES}")
METHODS = {
    name: resolve_method(name, cfg)
    for name, cfg in {**config["methods"], **GRID_METHODS}.items()
}
UNKNOWN = sorted({v for vs in config["best_of"].values() for v in vs} - set(METHODS))
if UNKNOWN:
    raise ConfigError(f"best_of names variants that are not configured: {UNKNOWN}")
# Variants differing only in inference settings share the first one's model.
TRAINED_BY = training_variants(METHODS)
DATASETS = config["datasets"]
RUNTIME = config["runtime"]
WEIGHTS = RUNTIME["weights_dir"]
EXPERIMENT = config["experiment"]


def get_categories(dataset):
    """The dataset's categories, narrowed by the optional top-level `categories` filter."""
    categories = dataset_categories(dataset, DATASETS[dataset])
    wanted = config.get("categories")
    return [c for c in categories if not wanted or c in wanted]


GRID = [
    (method, dataset, category)
    for method in METHODS
    for dataset in DATASETS
    for category in get_categories(dataset)
]


wildcard_constraints:
    method="|".join(map(re.escape, METHODS)),
    dataset="|".join(map(re.escape, DATASETS)),
    category=r"[A-Za-z0-9_.+-]+",
    backbone=r"[A-Za-z0-9_.-]+",


def train_category(method, category):
    """Methods that train one model per dataset store it under the category `all`."""
    per_dataset = method_class(METHODS[method]["kind"]).per_dataset
    return ALL_CATEGORIES if per_dataset else category


def get_resource(rule, key):
    """A job resource of `rule`: the dataset's override, else the top-level `resources`."""

    def resource(wildcards):
        override = DATASETS[wildcards.dataset].get("resources", {}).get(rule, {})
        return override.get(key, config["resources"][rule].get(key))

    return resource


def get_image_size(wildcards):
    return DATASETS[wildcards.dataset]["image_size"]


def get_method(wildcards):
    return METHODS[wildcards.method]


def get_training_params(wildcards):
    # Only what shapes the model: changing an inference setting must not retrain.
    return training_params(METHODS[wildcards.method])


def get_weights(wildcards):
    return [
        f"{WEIGHTS}/{name}/model.safetensors"
        for name in weight_names(METHODS[wildcards.method])
    ]


def get_model_dir(wildcards):
    category = train_category(wildcards.method, wildcards.category)
    return (
        f"results/models/{TRAINED_BY[wildcards.method]}/{wildcards.dataset}/{category}"
    )


def get_model(wildcards):
    return f"{get_model_dir(wildcards)}/metadata.json"


def get_model_weights(wildcards):
    return f"{get_model_dir(wildcards)}/model.safetensors"


def get_metrics(wildcards=None):
    return [
        f"results/metrics/{method}/{dataset}/{category}.parquet"
        for method, dataset, category in GRID
    ]


def get_heatmaps(wildcards=None):
    return [
        f"results/figures/heatmaps/{method}/{dataset}/{category}.png"
        for method, dataset, category in GRID
    ]


def get_tables(wildcards=None):
    return expand(
        "results/tables/{experiment}.{ext}",
        experiment=EXPERIMENT,
        ext=["md", "csv", "tex"],
    )


def get_reference_files(wildcards=None):
    return sorted(str(p) for p in Path(config["reference_dir"]).glob("*.csv"))


def get_final_outputs():
    return get_tables() + [f"results/figures/{EXPERIMENT}/metrics.png"] + get_heatmaps()
