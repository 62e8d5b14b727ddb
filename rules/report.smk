# Paper tables, figures and the material of `snakemake --report`.


rule build_tables:
    input:
        metrics=get_metrics(),
        reference=get_reference_files(),
    output:
        md=report(
            "results/tables/{experiment}.md",
            caption="../workflow/report/tables.rst",
            category="Tables",
        ),
        csv=report(
            "results/tables/{experiment}.csv",
            caption="../workflow/report/tables.rst",
            category="Tables",
        ),
        tex="results/tables/{experiment}.tex",
    log:
        "logs/report/{experiment}_tables.log",
    localrule: True
    conda:
        "../envs/data.yaml"
    params:
        references={name: cfg["reference"] for name, cfg in METHODS.items()},
        best_of=config["best_of"],
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
