# Paper tables, figures and the material of `snakemake --report`.
from diffad.report.coverage import coverage_note, table_name

# A run narrowed by `categories` writes its tables as
# <experiment>.partial-<categories>.*, marked partial, so that it never overwrites
# the full experiment's tables (common.smk's get_tables() asks for these).
TABLE_NAME = table_name(EXPERIMENT, config.get("categories"), FULL_CATEGORIES)
TABLE_FORMATS = ["md", "csv", "tex", "html"]


rule build_tables:
    input:
        metrics=get_metrics(),
        reference=get_reference_files(),
    output:
        md=f"results/tables/{TABLE_NAME}.md",
        html=report(
            f"results/tables/{TABLE_NAME}.html",
            caption="../workflow/report/tables.rst",
            category="Tables",
            subcategory="Browse",
            labels={"table": TABLE_NAME},
        ),
        tex=report(
            f"results/tables/{TABLE_NAME}.tex",
            caption="../workflow/report/table_files.rst",
            category="Tables",
            subcategory="Download (.tex, .csv)",
            labels={"file": f"{TABLE_NAME}.tex (LaTeX, booktabs)"},
        ),
        csv=report(
            f"results/tables/{TABLE_NAME}.csv",
            caption="../workflow/report/table_files.rst",
            category="Tables",
            subcategory="Download (.tex, .csv)",
            labels={"file": f"{TABLE_NAME}.csv (every column, full precision)"},
        ),
    log:
        f"logs/report/{TABLE_NAME}_tables.log",
    localrule: True
    conda:
        "../envs/data.yaml"
    params:
        title=TABLE_NAME,
        coverage=coverage_note(config.get("categories"), FULL_CATEGORIES),
        categories=FULL_CATEGORIES,
        references={name: cfg["reference"] for name, cfg in METHODS.items()},
        best_of=config["best_of"],
        seeds=METHOD_SET.seed_groups,
        grids=METHOD_SET.grid_points,
    script:
        "../workflow/scripts/tables.py"


rule metrics_chart:
    input:
        metrics=get_metrics(),
    output:
        report(
            "results/figures/{experiment}/metrics.png",
            caption="../workflow/report/metrics_chart.rst",
            category="Figures",
        ),
    log:
        "logs/report/{experiment}_metrics_chart.log",
    localrule: True
    conda:
        "../envs/data.yaml"
    params:
        # The variants named under `methods:`; a method grid's points (up to
        # hundreds) are in the tables.
        variants=METHOD_SET.shown,
    script:
        "../workflow/scripts/metrics_chart.py"


rule heatmaps:
    input:
        unpack(get_outputs),
    output:
        report(
            "results/figures/heatmaps/{method}/{dataset}/{category}.png",
            caption="../workflow/report/heatmaps.rst",
            category="Heatmaps",
            subcategory="{method} / {dataset}",
            labels={
                "method": "{method}",
                "dataset": "{dataset}",
                "category": "{category}",
            },
        ),
    log:
        "logs/report/heatmaps/{method}/{dataset}/{category}.log",
    group:
        "score"
    conda:
        "../envs/data.yaml"
    params:
        method=get_method,
        image_size=get_image_size,
    script:
        "../workflow/scripts/heatmaps.py"


rule tables:
    input:
        get_tables(),
    localrule: True


rule caption_samples:
    input:
        get_caption_tables,
    output:
        report(
            "results/figures/captions/{captioner}/{dataset}.html",
            caption="../workflow/report/captions.rst",
            category="Captions",
            labels={"captioner": "{captioner}", "dataset": "{dataset}"},
        ),
    log:
        "logs/report/captions/{captioner}/{dataset}.log",
    localrule: True
    conda:
        "../envs/data.yaml"
    script:
        "../workflow/scripts/caption_samples.py"


rule strength_figure:
    input:
        unpack(get_infer_inputs),
    output:
        report(
            "results/figures/strengths/{method}/{dataset}/{category}.png",
            caption="../workflow/report/strengths.rst",
            category="Reconstructions",
            subcategory="{method} / {dataset}",
            labels={
                "method": "{method}",
                "dataset": "{dataset}",
                "category": "{category}",
            },
        ),
    log:
        "logs/report/strengths/{method}/{dataset}/{category}.log",
    conda:
        "../envs/torch.yaml"
    threads: get_resource("infer", "cpus_per_task")
    resources:
        mem_mb=get_resource("infer", "mem_mb"),
        runtime=get_resource("infer", "runtime"),
        cpus_per_task=get_resource("infer", "cpus_per_task"),
        gpu=get_resource("infer", "gpu"),
        gpu_model=get_resource("infer", "gpu_model"),
    params:
        method=get_inference_params,
        artefacts=get_infer_artefacts,
        image_size=get_image_size,
        seed=RUNTIME["seed"],
    script:
        "../workflow/scripts/strength_figure.py"
