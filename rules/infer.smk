# Every detector's score per test image and its maps (float16, row order = Parquet order).


rule infer:
    input:
        unpack(get_infer_inputs),
    output:
        scores=PATHS.scores,
        maps=PATHS.maps,
        train_scores=PATHS.train_scores,
    log:
        PATHS.log("infer", "method", "dataset", "category"),
    # One cluster job scores a category, computes its metrics and draws its heatmaps.
    group:
        "score"
    conda:
        "../envs/torch.yaml"
    threads: PLAN.threads("infer")
    resources:
        **PLAN.resources("infer"),
    params:
        # What reruns the job (the job reads all it runs with from the plan).
        method=get_inference_params,
        train_scores=get_train_scores,
        image_size=get_image_size,
        seed=PLAN.runtime_settings()["seed"],
    script:
        "../workflow/scripts/infer.py"
