"""The caption stage: captioner settings, InternVL's tiling, and resumable caption tables
written by real (tiny, random) vision-language models."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import write_png
from PIL import Image

from diffad.captions import BUILTIN_CAPTIONERS, PROMPTS, CaptionerParams, resolve_captioners
from diffad.captions.families import generate_captions, load_captioner
from diffad.captions.table import CAPTION_COLUMNS, caption_images, partial_path, read_captions
from diffad.captions.tiling import IMAGENET_MEAN, IMAGENET_STD, dynamic_tiles, tiles_to_tensor
from diffad.errors import ConfigError, DatasetError
from diffad.runtime import Runtime


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain nothing from more threads, and OpenMP's spinning threads make them
    many times slower when other jobs share the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- settings -------------------------------------------------------------------------------


def test_builtins_and_prompts():
    captioners = resolve_captioners({})
    assert list(captioners) == list(BUILTIN_CAPTIONERS) == [
        "internvl2_8b", "internvl2_8b_long", "blip2", "deepseek_vl", "tiny_blip2"]
    assert resolve_captioners(None) == captioners
    # Greedy, but BLIP-2 as the authors' LAVIS call: 5 beams, at most 30 new tokens.
    assert [n for n, c in captioners.items() if c.num_beams != 1] == ["blip2"]
    assert (captioners["blip2"].num_beams, captioners["blip2"].max_new_tokens) == (5, 30)
    assert captioners["internvl2_8b"].prompt_text == "Describe the main object in detail."
    assert captioners["internvl2_8b"].max_new_tokens == 1024
    assert captioners["internvl2_8b_long"].prompt_text == PROMPTS["authors"]
    assert captioners["tiny_blip2"].family == "blip2"
    literal = CaptionerParams(family="blip2", weights="tiny_blip2", prompt="What is this?")
    assert literal.prompt_text == "What is this?"


def test_base_overrides_and_replacing_a_builtin():
    captioners = resolve_captioners({
        "short": {"base": "internvl2_8b", "max_new_tokens": 64, "prompt": "paper_coco"},
        "blip2": {"family": "blip2", "weights": "tiny_blip2"},
    })
    short = captioners["short"]
    assert (short.family, short.weights, short.dtype) == ("internvl_chat", "internvl2_8b",
                                                          "bfloat16")
    assert short.max_new_tokens == 64
    assert short.prompt_text == PROMPTS["paper_coco"]
    # A config entry named like a built-in replaces it: defaults, not the built-in's values.
    assert captioners["blip2"].weights == "tiny_blip2"
    assert captioners["internvl2_8b"].max_new_tokens == 1024


@pytest.mark.parametrize(("entry", "message"), [
    ({"base": "tiny_blip2", "batch_size": 0}, "captioners.x.batch_size: must be >= 1"),
    ({"base": "tiny_blip2", "batch_size": "8"}, "captioners.x.batch_size: expected int"),
    ({"family": "blip2", "weights": "no_such_weights"}, "captioners.x.weights: unknown"),
    ({"family": "blip2", "weights": "dino_vits8"}, "read by timm, not transformers"),
    ({"family": "llava", "weights": "tiny_blip2"}, "captioners.x.family"),
    ({"base": "no_such_captioner"}, "captioners.x.base: unknown built-in 'no_such_captioner'"),
    ({"base": "tiny_blip2", "beams": 2}, "captioners.x: unknown parameter(s) ['beams']"),
    ({"base": "tiny_blip2", "prompt": ""}, "captioners.x.prompt"),
])
def test_bad_entries_name_the_key(entry, message):
    with pytest.raises(ConfigError) as err:
        resolve_captioners({"x": entry})
    assert message in str(err.value)


def test_bad_names_are_refused():
    with pytest.raises(ConfigError, match="captioners.a/b"):
        resolve_captioners({"a/b": {"base": "tiny_blip2"}})


# --- InternVL's tiling ----------------------------------------------------------------------


def _image(width: int, height: int) -> Image.Image:
    rng = np.random.default_rng(width * 7919 + height)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def test_square_image_at_tile_size_is_one_tile():
    tiles = dynamic_tiles(_image(448, 448))
    assert len(tiles) == 1 and tiles[0].size == (448, 448)


def test_wide_image_is_two_tiles_and_a_thumbnail():
    image = _image(896, 448)
    tiles = dynamic_tiles(image)
    assert len(tiles) == 3 and all(t.size == (448, 448) for t in tiles)
    # Row by row: the left half, the right half, then the whole image shrunk.
    assert np.array_equal(np.asarray(tiles[0]), np.asarray(image.crop((0, 0, 448, 448))))
    assert np.array_equal(np.asarray(tiles[1]), np.asarray(image.crop((448, 0, 896, 448))))
    assert np.array_equal(np.asarray(tiles[2]),
                          np.asarray(image.resize((448, 448), Image.Resampling.BICUBIC)))


def test_large_image_gets_a_larger_grid_small_one_does_not():
    assert len(dynamic_tiles(_image(1000, 1000))) == 3 * 3 + 1
    assert len(dynamic_tiles(_image(100, 100))) == 1


@pytest.mark.parametrize("max_tiles", [1, 2, 5, 12])
@pytest.mark.parametrize("size", [(30, 500), (2000, 300), (1000, 1000), (640, 480)])
def test_tile_count_never_exceeds_max_tiles_plus_thumbnail(size, max_tiles):
    tiles = dynamic_tiles(_image(*size).resize((size[0] // 4 + 1, size[1] // 4 + 1)),
                          tile_size=112, max_tiles=max_tiles)
    assert 1 <= len(tiles) <= max_tiles + 1
    assert len(tiles) != 2  # one tile, or at least two plus the thumbnail


def test_tiles_tensor_is_normalised():
    grey = Image.new("RGB", (20, 30), (51, 102, 204))
    tensor = tiles_to_tensor([grey, grey], tile_size=16)
    assert tensor.shape == (2, 3, 16, 16) and tensor.dtype == torch.float32
    expected = (np.array([51, 102, 204]) / 255 - np.array(IMAGENET_MEAN)) / IMAGENET_STD
    assert np.allclose(tensor.mean(dim=(0, 2, 3)).numpy(), expected, atol=1e-5)
    assert float(tensor.std(dim=(2, 3)).max()) < 1e-5


# --- InternVL2's batch_chat -> generate path (a stand-in of its remote code) --------------

def test_internvl_chat_asks_batch_chat_which_generates_through_its_language_model():
    from internvl_standin import standin_internvl_chat

    model, tokenizer = standin_internvl_chat()
    params = resolve_captioners({"vl": {"base": "internvl2_8b", "tile_size": 32,
                                        "max_tiles": 2, "max_new_tokens": 6,
                                        "dtype": "float32"}})["vl"]
    # A wide image is two tiles and a thumbnail, a square one a single tile: the batch
    # is padded on the left and the image tokens of each row differ in number.
    images = [Image.new("RGB", (64, 32), (200, 30, 30)), Image.new("RGB", (32, 32), (9, 9, 9))]
    cpu = torch.device("cpu")
    captions = generate_captions("internvl_chat", model, tokenizer, images,
                                 params.prompt_text, params, cpu)
    assert len(captions) == 2 and all(isinstance(c, str) for c in captions)
    again = generate_captions("internvl_chat", model, tokenizer, images, params.prompt_text,
                              params, cpu)
    assert again == captions  # greedy: the same words
    # Each row's answer is its own: captioned alone, an image gets the same words.
    alone = generate_captions("internvl_chat", model, tokenizer, images[1:],
                              params.prompt_text, params, cpu)
    assert alone == captions[1:]
    # The tile size is checked against the model's.
    wrong = params.model_copy(update={"tile_size": 48})
    with pytest.raises(ValueError, match="tile_size is 48 but the model was trained on 32"):
        generate_captions("internvl_chat", model, tokenizer, images, "x", wrong, cpu)


def test_internvl2_refuses_a_transformers_it_cannot_generate_with(runtime):
    from diffad.captions.families import check_internvl_transformers, dtype_argument

    for works in ("4.37.2", "4.49.0", "4.51.3"):
        check_internvl_transformers(works)
    for breaks in ("4.52.0", "4.57.3", "5.25.0", "5.0.0.dev0"):
        with pytest.raises(ConfigError, match="envs/internvl.yaml"):
            check_internvl_transformers(breaks, "internvl2_8b")
    # That environment's transformers names the weights' dtype the old way.
    assert dtype_argument("4.51.3") == "torch_dtype" and dtype_argument("5.25.0") == "dtype"
    # Before any weight is read: the installed transformers (5.x) refuses at once.
    params = resolve_captioners({})["internvl2_8b"]
    with pytest.raises(ConfigError, match="captioner 'internvl2_8b' runs InternVL2's own"):
        load_captioner(params, runtime)


# --- caption tables with a tiny BLIP-2 ------------------------------------------------------

SIZES = [(40, 30), (64, 64), (30, 50), (80, 40), (32, 32)]


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> Path:
    from diffad.weights import fetch_weights

    root = tmp_path_factory.mktemp("caption_weights")
    fetch_weights("tiny_blip2", root)
    return root


@pytest.fixture(scope="module")
def runtime(tiny_root) -> Runtime:
    return Runtime(device=torch.device("cpu"), weights_root=tiny_root, image_size=32, seed=0)


@pytest.fixture(scope="module")
def rows(tmp_path_factory) -> pd.DataFrame:
    folder = tmp_path_factory.mktemp("caption_images")
    paths = [write_png(folder / "bottle" / "train" / "good" / f"{i:03d}.png", size)
             for i, size in enumerate(SIZES)]
    return pd.DataFrame({"image_path": [str(p) for p in paths], "split": "train",
                         "category": "bottle", "label": 0})


@pytest.fixture(scope="module")
def tiny() -> CaptionerParams:
    # Batches of two: five images make three batches and partial files in between.
    return resolve_captioners({"tiny": {"base": "tiny_blip2", "batch_size": 2}})["tiny"]


@pytest.fixture(scope="module")
def full_table(tiny, rows, runtime, tmp_path_factory) -> pd.DataFrame:
    return caption_images("tiny", tiny, rows, runtime,
                          tmp_path_factory.mktemp("full") / "bottle.parquet")


def test_caption_table_columns_and_captions(full_table, rows, tiny):
    assert tuple(full_table.columns) == CAPTION_COLUMNS
    assert list(full_table["image_path"]) == list(rows["image_path"])
    for column in CAPTION_COLUMNS:
        if column == "seconds":
            assert full_table[column].dtype == np.float64
        else:
            assert pd.api.types.is_string_dtype(full_table[column]), column
    assert (full_table["caption"].str.len() > 0).all()
    assert set(full_table["prompt"]) == {tiny.prompt_text}
    assert set(full_table["captioner"]) == {"tiny"}
    assert (full_table["seconds"] > 0).all()


def test_captions_are_deterministic_and_written(full_table, tiny, rows, runtime, tmp_path):
    output = tmp_path / "again.parquet"
    again = caption_images("tiny", tiny, rows, runtime, output)
    assert list(again["caption"]) == list(full_table["caption"])
    written = pd.read_parquet(output)
    pd.testing.assert_frame_equal(written, again)
    assert not partial_path(output).exists()
    assert read_captions([output]) == dict(zip(rows["image_path"], again["caption"],
                                               strict=True))


def test_resume_keeps_captioned_rows_and_captions_the_rest(full_table, tiny, rows, runtime,
                                                           tmp_path, caplog):
    first = caption_images("tiny", tiny, rows.iloc[:2], runtime, tmp_path / "first.parquet")
    output = tmp_path / "all.parquet"
    shutil.copy(tmp_path / "first.parquet", partial_path(output))
    caplog.set_level(logging.INFO, logger="diffad")
    table = caption_images("tiny", tiny, rows, runtime, output)
    assert "resuming: 2 of 5 images already captioned" in caplog.text
    pd.testing.assert_frame_equal(table.iloc[:2], first)  # seconds included: not redone
    assert not np.isin(table["seconds"].iloc[2:], first["seconds"]).any()
    assert list(table["caption"]) == list(full_table["caption"])
    assert not partial_path(output).exists()


def test_partial_with_another_prompt_is_ignored(tiny, rows, runtime, tmp_path, caplog):
    other = resolve_captioners({"tiny": {"base": "tiny_blip2", "prompt": "authors"}})["tiny"]
    output = tmp_path / "bottle.parquet"
    caption_images("tiny", tiny, rows.iloc[:2], runtime, partial_path(output))
    caplog.set_level(logging.INFO, logger="diffad")
    table = caption_images("tiny", other, rows, runtime, output)
    assert "ignoring partial caption file" in caplog.text
    assert "resuming" not in caplog.text
    assert set(table["prompt"]) == {PROMPTS["authors"]}


def test_partial_with_other_settings_is_ignored(tiny, rows, runtime, tmp_path, caplog):
    shorter = resolve_captioners({"tiny": {"base": "tiny_blip2", "max_new_tokens": 4}})["tiny"]
    output = tmp_path / "bottle.parquet"
    caption_images("tiny", shorter, rows.iloc[:2], runtime, partial_path(output))
    caplog.set_level(logging.INFO, logger="diffad")
    caption_images("tiny", tiny, rows, runtime, output)
    assert "made with other settings" in caplog.text and "resuming" not in caplog.text


def test_empty_rows_name_the_output(tiny, rows, runtime, tmp_path):
    with pytest.raises(DatasetError, match="empty.parquet"):
        caption_images("tiny", tiny, rows.iloc[:0], runtime, tmp_path / "empty.parquet")


def test_read_captions_refuses_a_table_without_captions(tmp_path):
    bad = tmp_path / "bad.parquet"
    pd.DataFrame({"image_path": ["a.png"]}).to_parquet(bad)
    with pytest.raises(ValueError, match="bad.parquet"):
        read_captions([bad])


def test_blip2_strips_the_prompt_of_a_decoder_only_model(tiny, rows, runtime):
    model, processor = load_captioner(tiny, runtime)
    assert model.config.use_decoder_only_language_model  # OPT
    images = [Image.open(p).convert("RGB") for p in rows["image_path"]]
    captions = generate_captions("blip2", model, processor, images, tiny.prompt_text, tiny,
                                 runtime.device)
    # The tokenizer lower-cases: the prompt would come back as "describe the main object...".
    prompt = tiny.prompt_text.lower()
    assert len(captions) == len(images)
    assert not any(c.lower().startswith(prompt) for c in captions)
    # ...which it does when the prompt is not cut off.
    inputs = processor(images=images[:1], text=[tiny.prompt_text], return_tensors="pt")
    raw = processor.batch_decode(model.generate(**inputs, max_new_tokens=4),
                                 skip_special_tokens=True)
    assert raw[0].lower().startswith(prompt)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_reduced_precision_inputs_match_the_weights(dtype, rows, runtime):
    # In float16 BLIP-2 keeps its Q-Former in float32: the inputs follow the vision tower.
    params = resolve_captioners({"t": {"base": "tiny_blip2", "dtype": dtype}})["t"]
    model, processor = load_captioner(params, runtime)
    assert model.vision_model.embeddings.patch_embedding.weight.dtype == getattr(torch, dtype)
    images = [Image.open(p).convert("RGB") for p in rows["image_path"][:2]]
    captions = generate_captions("blip2", model, processor, images, params.prompt_text,
                                 params, runtime.device)
    assert len(captions) == 2 and all(captions)


# --- a transformers-native chat VLM (a tiny random LLaVA) -----------------------------------


@pytest.fixture(scope="module")
def tiny_llava():
    """A LLaVA (CLIP vision tower + Llama) at a tiny width, random weights, with MiniLM's
    tokenizer and a plain chat template: an image-text-to-text model with a processor."""
    from transformers import (
        CLIPImageProcessor,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    from diffad.weights.tiny import minilm_tokenizer

    tokenizer = minilm_tokenizer()
    tokenizer.model_input_names = ["input_ids", "attention_mask"]  # no BERT token types
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    template = ("{% for m in messages %}{{ m['role'] }}: {% for c in m['content'] %}"
                "{% if c['type'] == 'image' %}<image>{% else %}{{ c['text'] }}{% endif %}"
                "{% endfor %}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}")
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32},
                                           crop_size={"height": 32, "width": 32}),
        tokenizer=tokenizer, patch_size=8, vision_feature_select_strategy="default",
        num_additional_image_tokens=1, chat_template=template, image_token="<image>")
    small = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
             "num_attention_heads": 2}
    config = LlavaConfig(
        vision_config={"model_type": "clip_vision_model", **small, "image_size": 32,
                       "patch_size": 8},
        text_config={"model_type": "llama", **small, "num_key_value_heads": 2,
                     "vocab_size": len(tokenizer), "max_position_embeddings": 256,
                     "bos_token_id": tokenizer.cls_token_id,
                     "eos_token_id": tokenizer.sep_token_id,
                     "pad_token_id": tokenizer.pad_token_id},
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"), vision_feature_layer=-1)
    torch.manual_seed(0)
    return LlavaForConditionalGeneration(config).eval(), processor


def test_image_text_to_text_captions_without_the_prompt(tiny_llava, rows):
    model, processor = tiny_llava
    params = CaptionerParams(family="image_text_to_text", weights="tiny_blip2",
                             max_new_tokens=6, dtype="float32")
    images = [Image.open(p).convert("RGB") for p in rows["image_path"]]
    captions = generate_captions("image_text_to_text", model, processor, images,
                                 params.prompt_text, params, torch.device("cpu"))
    assert len(captions) == len(images) and all(captions)
    assert not any("describe the main object" in c.lower() for c in captions)
    # Batched as one at a time: the batch changes nothing.
    single = generate_captions("image_text_to_text", model, processor, images[3:4],
                               params.prompt_text, params, torch.device("cpu"))
    assert single == captions[3:4]
