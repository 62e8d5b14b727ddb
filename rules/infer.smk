# Every detector's score per test image and its maps (float16, row order = Parquet order).


rule infer:
    input:
        unpack(get_infer_inputs),
    output:
        scores="results/scores/{method}/{dataset}/{category}.parquet",
        maps="results/scores/{method}/{dataset}/{category}.maps.safetensors",
        train_scores="results/scores/{method}/{dataset}/train/{category}.parquet",
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
        method=get_inference_params,
        train_scores=lambda wildcards: METHOD_SET.train_scores[wildcards.method],
        artefacts=get_infer_artefacts,
        image_size=get_image_size,
        seed=RUNTIME["seed"],
    script:
        "../workflow/scripts/infer.py"
