# Config validation, the (method, dataset, category) grid and the input functions.
import re
from pathlib import Path

from snakemake.utils import validate

from diffad.autoencoder import resolve_autoencoders
from diffad.captions import resolve_captioners
from diffad.data import CATEGORY_PATTERN, dataset_categories
from diffad.methods import (
    ALL_CATEGORIES,
    check_artefacts,
    check_datasets,
    for_category,
    kind_of,
    load_plugins,
    method_set,
    params_of,
    runs_on,
    tier_values,
)

validate(config, schema="../config/schema/config.schema.yaml")

# Resolved once, at DAG build: an unknown kind or a bad parameter fails here,
# with its config path in the message, before any job starts.
load_plugins(config["plugins"])
METHOD_SET = method_set(
    config["methods"], config["method_grids"], config["best_of"], config["seeds"]
)
METHODS = METHOD_SET.resolved
# Named upstream stages (paper 003): built-in entries plus the config's own.
CAPTIONERS = resolve_captioners(config["captioners"])
AUTOENCODERS = resolve_autoencoders(config["autoencoders"])
check_artefacts(METHOD_SET, {"captions": CAPTIONERS, "autoencoder": AUTOENCODERS})
check_datasets(METHOD_SET, list(config["datasets"]))
# Variants differing only in inference settings share a model (TRAINED_BY);
# variants differing only in score settings share inference (INFERRED_BY).
TRAINED_BY = METHOD_SET.trained_by
INFERRED_BY = METHOD_SET.inferred_by
PARAMS = {name: params_of(resolved) for name, resolved in METHODS.items()}
KINDS = {name: kind_of(resolved) for name, resolved in METHODS.items()}
DATASETS = config["datasets"]
RUNTIME = config["runtime"]
WEIGHTS = RUNTIME["weights_dir"]
EXPERIMENT = config["experiment"]
# Where each kind of declared upstream artefact lives: captions per category; an
# autoencoder per training unit of the method (`all` for one model per dataset).
ARTEFACT_PATHS = {
    "captions": "results/captions/{name}/{dataset}/{category}.parquet",
    "test_captions": "results/captions/{name}/{dataset}/test/{category}.parquet",
    "autoencoder": "results/models/autoencoder/{name}/{dataset}/{unit}/metadata.json",
}


# Each dataset's full category list, read once (a folder dataset lists its folders).
FULL_CATEGORIES = {
    name: dataset_categories(name, cfg) for name, cfg in DATASETS.items()
}


def get_categories(dataset):
    """The dataset's categories, narrowed by the optional top-level `categories` filter."""
    wanted = config.get("categories")
    return [c for c in FULL_CATEGORIES[dataset] if not wanted or c in wanted]


GRID = [
    (method, dataset, category)
    for method in METHODS
    for dataset in DATASETS
    if runs_on(METHODS[method], dataset)
    for category in get_categories(dataset)
]


wildcard_constraints:
    method="|".join(map(re.escape, METHODS)),
    dataset="|".join(map(re.escape, DATASETS)),
    category=CATEGORY_PATTERN,
    name=r"[A-Za-z0-9_.-]+",
    captioner=r"[A-Za-z0-9_.-]+",
    autoencoder=r"[A-Za-z0-9_.-]+",


def train_category(method, category):
    """Methods that train one model per dataset store it under the category `all`."""
    return ALL_CATEGORIES if KINDS[method].per_dataset(PARAMS[method]) else category


def training_categories(method, dataset, category):
    """The categories a model trains on: a per-dataset model takes every category of
    the dataset (the top-level `categories` filter narrows evaluation only)."""
    if category == ALL_CATEGORIES:
        return FULL_CATEGORIES[dataset]
    return [category]


def get_resource(rule, key):
    """A job resource of `rule`: the dataset's override, else the top-level `resources`.

    A constant where no dataset overrides it: Snakemake evaluates a function per job,
    which costs seconds in a DAG of thousands of jobs."""
    default = config["resources"][rule].get(key)
    if not any(key in d.get("resources", {}).get(rule, {}) for d in DATASETS.values()):
        return default

    def resource(wildcards):
        override = DATASETS[wildcards.dataset].get("resources", {}).get(rule, {})
        return override.get(key, default)

    return resource


def get_image_size(wildcards):
    return DATASETS[wildcards.dataset]["image_size"]


def variant(wildcards):
    """The variant as its jobs for this category see it (`per_category` applied)."""
    return for_category(METHODS[wildcards.method], wildcards.category)


def get_method(wildcards):
    """Every parameter of the variant (evaluate and heatmaps apply its score tier)."""
    return tier_values(variant(wildcards))


def get_training_params(wildcards):
    # Only what shapes the model: changing an infer or score setting must not retrain.
    return tier_values(variant(wildcards), "train")


def get_inference_params(wildcards):
    # What the network is asked: changing a score setting must not rerun inference.
    return tier_values(variant(wildcards), "train", "infer")


def requirements(wildcards):
    return KINDS[wildcards.method].requirements(params_of(variant(wildcards)))


def get_weights(wildcards):
    return [f"{WEIGHTS}/{name}/source.json" for name in requirements(wildcards).weights]


def get_artefacts(wildcards, inference=False):
    """The declared upstream artefacts of a train job (with `inference`: of an infer
    job): stage -> name -> its files, one per category the job reads."""
    categories = training_categories(
        wildcards.method, wildcards.dataset, wildcards.category
    )
    unit = train_category(wildcards.method, wildcards.category)
    needs = requirements(wildcards)
    out = {}
    for artefact in needs.artefacts + (needs.infer_artefacts if inference else ()):
        template = ARTEFACT_PATHS[artefact.stage]
        paths = [
            template.format(
                name=artefact.name, dataset=wildcards.dataset, category=c, unit=unit
            )
            for c in categories
        ]
        out.setdefault(artefact.stage, {})[artefact.name] = list(dict.fromkeys(paths))
    return out


def get_infer_artefacts(wildcards):
    return get_artefacts(wildcards, inference=True)


def artefact_files(artefacts):
    return [
        p for names in artefacts.values() for paths in names.values() for p in paths
    ]


def get_upstream(wildcards):
    """The manifests, weights and declared artefacts a train job reads (one input
    function per rule: Snakemake calls each per job)."""
    return {
        **get_manifests(wildcards),
        "weights": get_weights(wildcards),
        "artefacts": artefact_files(get_artefacts(wildcards)),
    }


def get_infer_inputs(wildcards):
    return {
        **get_manifests(wildcards),
        "weights": get_weights(wildcards),
        "artefacts": artefact_files(get_infer_artefacts(wildcards)),
        "model": get_model(wildcards),
    }


def get_evaluate_inputs(wildcards):
    return {**get_outputs(wildcards), "model": get_model(wildcards)}


def get_captioner(wildcards):
    return CAPTIONERS[wildcards.captioner].model_dump(mode="json")


def get_captioner_weights(wildcards):
    return f"{WEIGHTS}/{CAPTIONERS[wildcards.captioner].weights}/source.json"


def get_autoencoder(wildcards):
    return AUTOENCODERS[wildcards.autoencoder].model_dump(mode="json")


def get_autoencoder_inputs(wildcards):
    """The manifests of the unit's categories (`all`: every category of the dataset)
    and the weights of the pretrained VAE and of the perceptual network."""
    params = AUTOENCODERS[wildcards.autoencoder]
    names = [params.weights] + ([params.perceptual] if params.finetune else [])
    categories = (
        FULL_CATEGORIES[wildcards.dataset]
        if wildcards.category == ALL_CATEGORIES
        else [wildcards.category]
    )
    return {
        "manifests": [
            f"results/data/{wildcards.dataset}/{c}.parquet" for c in categories
        ],
        "weights": [f"{WEIGHTS}/{name}/source.json" for name in names],
    }


def get_dataset_params(wildcards):
    """The dataset entry as a category's manifest sees it: without the category list
    and the job resources, so that adding a category never reruns another's manifest."""
    entry = {
        k: v
        for k, v in DATASETS[wildcards.dataset].items()
        if k not in ("categories", "resources")
    }
    if "category" in wildcards.keys():
        entry["categories"] = [wildcards.category]
    return entry


def get_download(wildcards):
    """The dataset's download marker, where the config asks for a download."""
    if DATASETS[wildcards.dataset].get("download"):
        return f"results/data/{wildcards.dataset}/download.json"
    return []


def get_manifests(wildcards):
    """The manifests of the categories a job reads (every category for `all`)."""
    categories = training_categories(
        wildcards.method, wildcards.dataset, wildcards.category
    )
    return {
        "manifests": [
            f"results/data/{wildcards.dataset}/{c}.parquet" for c in categories
        ]
    }


def get_model_dir(wildcards):
    category = train_category(wildcards.method, wildcards.category)
    return (
        f"results/models/{TRAINED_BY[wildcards.method]}/{wildcards.dataset}/{category}"
    )


def get_model(wildcards):
    return f"{get_model_dir(wildcards)}/metadata.json"


def get_outputs(wildcards):
    """The infer outputs a variant scores: those of its inference owner."""
    stem = (
        f"results/scores/{INFERRED_BY[wildcards.method]}/{wildcards.dataset}/"
        f"{wildcards.category}"
    )
    return {
        "scores": f"{stem}.parquet",
        "maps": f"{stem}.maps.safetensors",
        "train_scores": (
            f"results/scores/{INFERRED_BY[wildcards.method]}/{wildcards.dataset}/train/"
            f"{wildcards.category}.parquet"
        ),
    }


def get_metrics(wildcards=None):
    return [
        f"results/metrics/{method}/{dataset}/{category}.parquet"
        for method, dataset, category in GRID
    ]


def get_heatmaps(wildcards=None):
    """Heatmaps of the variants named under `methods:` (a seeded one: its first run);
    the points of a method grid (sweeps of up to hundreds of variants) get metrics and
    tables only."""
    return [
        f"results/figures/heatmaps/{method}/{dataset}/{category}.png"
        for method, dataset, category in GRID
        if method in METHOD_SET.shown
    ]


def get_tables(wildcards=None):
    """The experiment's tables; TABLE_NAME (rules/report.smk) names a filtered run's apart."""
    return expand("results/tables/{name}.{ext}", name=TABLE_NAME, ext=TABLE_FORMATS)


def get_reference_files(wildcards=None):
    return sorted(str(p) for p in Path(config["reference_dir"]).glob("*.csv"))


def used_captioners():
    """(captioner, dataset) of every variant of the grid that trains on captions."""
    pairs = {
        (artefact.name, dataset)
        for method, dataset, category in GRID
        for artefact in KINDS[method].requirements(PARAMS[method]).artefacts
        if artefact.stage == "captions"
    }
    return sorted(pairs)


def get_caption_samples(wildcards=None):
    """The report's page of sample captions per (captioner, dataset) in use."""
    return [
        f"results/figures/captions/{captioner}/{dataset}.html"
        for captioner, dataset in used_captioners()
    ]


def get_caption_tables(wildcards):
    return [
        f"results/captions/{wildcards.captioner}/{wildcards.dataset}/{c}.parquet"
        for c in get_categories(wildcards.dataset)
    ]


def get_strength_figures(wildcards=None):
    """Reconstructions at increasing strength (paper 000's Figure 4.1) of the variants
    named under `methods:` that reconstruct from a `strength`, one per inference (a
    variant differing in score settings only would draw the same figure)."""
    return [
        f"results/figures/strengths/{method}/{dataset}/{category}.png"
        for method, dataset, category in GRID
        if method in METHOD_SET.shown
        and INFERRED_BY[method] == method
        and KINDS[method].reconstructs_by_strength(PARAMS[method])
    ]


def get_final_outputs():
    return (
        get_tables()
        + [f"results/figures/{TABLE_NAME}/metrics.png"]
        + get_heatmaps()
        + get_caption_samples()
        + get_strength_figures()
    )
