# diffad: diffusion-based industrial anomaly detection, from dataset to paper table.
# Targets: all (default), tables, report (`snakemake --report results/report.html`).
import os

from snakemake.utils import min_version

min_version("9.0")


# An experiment config (--configfile) is complete on its own: the embedded
# default is read only without one, since Snakemake would merge the two.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/weights.smk"
include: "rules/captions.smk"
include: "rules/autoencoder.smk"
include: "rules/train.smk"
include: "rules/infer.smk"
include: "rules/evaluate.smk"
include: "rules/report.smk"


# A rehearsal ends with its cost table and the estimate of the full run.
onsuccess:
    cost = PLAN.cost_files().get("md")
    if cost and os.path.isfile(cost):
        print(open(cost).read())


rule all:
    default_target: True
    input:
        PLAN.final_outputs(),
