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
    conda:
        "../envs/torch.yaml"
    threads: workflow.cores
    params:
        method=get_method,
        image_size=get_image_size,
        seed=RUNTIME["seed"],
    script:
        "../workflow/scripts/infer.py"
