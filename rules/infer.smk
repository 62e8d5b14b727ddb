# Scores per test image and anomaly maps (float16, row order = Parquet order).


rule infer:
    input:
        manifest="results/data/{dataset}/manifest.parquet",
        weights=get_weights,
        model=get_model,
        model_weights=get_model_weights,
    output:
        scores="results/scores/{method}/{dataset}/{category}.parquet",
        maps="results/scores/{method}/{dataset}/{category}.maps.npy",
    log:
        "logs/infer/{method}/{dataset}/{category}.log",
    # One cluster job scores a category, computes its metrics and draws its heatmaps.
    group:
        "score"
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
        method=get_method,
        image_size=get_image_size,
        seed=RUNTIME["seed"],
    script:
        "../workflow/scripts/infer.py"
