# Paper tables, figures and the material of `snakemake --report`. A run narrowed by
# `categories` writes its tables as <experiment>.partial-<categories>.*, marked partial,
# so that it never overwrites the full experiment's tables.
TABLES = PLAN.table_files()


rule build_tables:
    input:
        metrics=PLAN.metrics(),
        reference=PLAN.reference_files(),
    output:
        md=TABLES["md"],
        html=report(
            TABLES["html"],
            caption="../workflow/report/tables.rst",
            category="Tables",
            subcategory="Browse",
            labels={"table": PLAN.table_name},
        ),
        tex=report(
            TABLES["tex"],
            caption="../workflow/report/table_files.rst",
            category="Tables",
            subcategory="Download (.tex, .csv)",
            labels={"file": f"{PLAN.table_name}.tex (LaTeX, booktabs)"},
        ),
        csv=report(
            TABLES["csv"],
            caption="../workflow/report/table_files.rst",
            category="Tables",
            subcategory="Download (.tex, .csv)",
            labels={"file": f"{PLAN.table_name}.csv (every column, full precision)"},
        ),
    log:
        PLAN.tables_log(),
    localrule: True
    conda:
        "../envs/data.yaml"
    params:
        **PLAN.table_params(),
    script:
        "../workflow/scripts/tables.py"


rule metrics_chart:
    input:
        metrics=PLAN.metrics(),
    output:
        report(
            PATHS.metrics_chart,
            caption="../workflow/report/metrics_chart.rst",
            category="Figures",
        ),
    log:
        PATHS.log("metrics_chart", "experiment"),
    localrule: True
    conda:
        "../envs/data.yaml"
    params:
        # The variants named under `methods:`; a method grid's points (up to
        # hundreds) are in the tables.
        variants=PLAN.variants.shown,
    script:
        "../workflow/scripts/metrics_chart.py"


rule heatmaps:
    input:
        unpack(get_evaluate_inputs),
    output:
        report(
            PATHS.heatmaps,
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
        PATHS.log("heatmaps", "method", "dataset", "category"),
    group:
        "score"
    conda:
        "../envs/data.yaml"
    params:
        method=get_score_params,
        image_size=get_image_size,
    script:
        "../workflow/scripts/heatmaps.py"


rule tables:
    input:
        list(TABLES.values()),
    localrule: True


rule caption_samples:
    input:
        get_caption_tables,
    output:
        report(
            PATHS.caption_samples,
            caption="../workflow/report/captions.rst",
            category="Captions",
            labels={"captioner": "{captioner}", "dataset": "{dataset}"},
        ),
    log:
        PATHS.log("caption_samples", "captioner", "dataset"),
    localrule: True
    conda:
        "../envs/data.yaml"
    script:
        "../workflow/scripts/caption_samples.py"


rule cost:
    input:
        PLAN.cost_inputs() if PLAN.rehearsal else [],
    output:
        **PLAN.cost_files(),
    log:
        PATHS.log("cost"),
    localrule: True
    conda:
        "../envs/torch.yaml"
    script:
        "../workflow/scripts/cost.py"
