# Captions of a category's images by a vision-language model (paper 003): one table per
# (captioner, dataset, category) of the train images, and of the test images where a
# variant conditions its inference on them. Resumable: a killed job keeps what it wrote.


rule captions:
    input:
        unpack(get_captioner_inputs),
    output:
        PATHS.captions,
    log:
        PATHS.log("captions", "captioner", "dataset", "category"),
    conda:
        get_captioner_env
    threads: PLAN.threads("captions")
    resources:
        **PLAN.resources("captions"),
    params:
        captioner=get_captioner,
        split="train",
        seed=PLAN.runtime_settings()["seed"],
    script:
        "../workflow/scripts/captions.py"


use rule captions as test_captions with:
    output:
        PATHS.test_captions,
    log:
        PATHS.log("test_captions", "captioner", "dataset", "category"),
    params:
        captioner=get_captioner,
        split="test",
        seed=PLAN.runtime_settings()["seed"],
