# Every detector's score per test image and its maps (float16, row order = Parquet order).
# A variant shown in the report that reconstructs from a `strength` also draws, in the
# same job and with the model it loaded, its reconstructions at increasing strength
# (paper 000's Figure 4.1): each variant is made by exactly one of the two rules.


rule infer:
    input:
        unpack(get_infer_inputs),
    output:
        scores=PATHS.scores,
        maps=PATHS.maps,
        train_scores=PATHS.train_scores,
    log:
        PATHS.log("infer", "method", "dataset", "category"),
    wildcard_constraints:
        method=PLAN.infer_constraints(strengths=False),
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


use rule infer as infer_with_strengths with:
    output:
        scores=PATHS.scores,
        maps=PATHS.maps,
        train_scores=PATHS.train_scores,
        strengths=report(
            PATHS.strengths,
            caption="../workflow/report/strengths.rst",
            category="Reconstructions",
            subcategory="{method} / {dataset}",
            labels={
                "method": "{method}",
                "dataset": "{dataset}",
                "category": "{category}",
            },
        ),
    wildcard_constraints:
        method=PLAN.infer_constraints(strengths=True),
