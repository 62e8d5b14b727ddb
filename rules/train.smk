# One model folder per (method, dataset, category), or per dataset (category `all`).


rule train:
    input:
        unpack(get_train_inputs),
    output:
        metadata=PATHS.model,
        loss=PATHS.model_loss,
    log:
        PATHS.log("train", "method", "dataset", "category"),
    conda:
        "../envs/torch.yaml"
    threads: PLAN.threads("train")
    resources:
        **PLAN.resources("train"),
    params:
        # What reruns the job (the job reads all it runs with from the plan).
        method=get_training_params,
        image_size=get_image_size,
        seed=PLAN.runtime_settings()["seed"],
    script:
        "../workflow/scripts/train.py"
