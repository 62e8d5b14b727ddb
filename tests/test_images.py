"""load_image and load_mask on every PIL mode: the actual pixel values, not just the shapes."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import write_mask, write_png
from PIL import Image

from diffad.data import load_image, load_mask
from diffad.data.images import _int_max, image_size
from diffad.errors import DatasetError


def _save(img: Image.Image, path: Path) -> Path:
    img.save(path)
    return path


def _gradient16(width: int = 256, height: int = 4) -> np.ndarray:
    """A horizontal 16-bit ramp from 0 to 65535."""
    row = np.round(np.linspace(0, 65535, width)).astype(np.uint16)
    return np.tile(row, (height, 1))


def test_l_is_value_over_255_on_three_channels(tmp_path):
    values = np.arange(256, dtype=np.uint8).reshape(16, 16)
    img = load_image(_save(Image.fromarray(values), tmp_path / "l.png"))
    assert img.shape == (16, 16, 3) and img.dtype == np.float32
    assert np.array_equal(img[..., 0], values / np.float32(255))
    assert np.array_equal(img[..., 0], img[..., 2])


def test_l_resized_and_missing_file(tmp_path):
    grey = write_png(tmp_path / "grey.png", (40, 30), value=128, mode="L")
    img = load_image(grey, 16)
    assert img.shape == (16, 16, 3) and img.dtype == np.float32
    assert np.allclose(img, 128 / 255, atol=1e-6)
    with pytest.raises(DatasetError, match="missing.png"):
        load_image(tmp_path / "missing.png", 16)


def test_rgb_is_unchanged_value_over_255(tmp_path):
    path = write_png(tmp_path / "rgb.png", (40, 30))
    raw = np.asarray(Image.open(path))
    img = load_image(path)
    assert img.shape == (30, 40, 3)
    assert np.array_equal(img, raw.astype(np.float32) / np.float32(255))
    resized = load_image(path, 16)
    expected = np.asarray(Image.open(path).resize((16, 16), Image.Resampling.BICUBIC))
    assert np.array_equal(resized, expected.astype(np.float32) / np.float32(255))


def _png48(path: Path, pixels: np.ndarray) -> Path:
    """A 16-bit-per-channel RGB PNG (Pillow cannot write one)."""
    height, width, _ = pixels.shape
    data = pixels.astype(">u2")
    raw = b"".join(b"\x00" + data[y].tobytes() for y in range(height))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body)))

    header = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return path


def test_rgb_16_bit_png_is_scaled_not_clipped(tmp_path):
    pixels = np.array([[[0, 0, 0], [32768, 32768, 32768], [65535, 0, 4000]]], np.uint16)
    img = load_image(_png48(tmp_path / "rgb48.png", pixels))
    assert img[0, 0].tolist() == [0, 0, 0] and img[0, 2, 0] == 1.0
    assert img[0, 1] == pytest.approx([128 / 255] * 3)
    assert img[0, 2, 2] == pytest.approx((4000 >> 8) / 255)


def test_la_drops_alpha_without_compositing(tmp_path):
    grey = np.array([[10, 200], [90, 255]], np.uint8)
    alpha = np.array([[0, 0], [128, 255]], np.uint8)
    path = _save(Image.fromarray(np.stack([grey, alpha], -1)), tmp_path / "la.png")
    assert Image.open(path).mode == "LA"
    img = load_image(path)
    # transparent pixels keep their stored grey value: not blackened, not whitened
    assert np.allclose(img, np.repeat(grey[..., None], 3, -1) / 255, atol=1e-6)


def test_rgba_drops_alpha_without_compositing(tmp_path):
    rgb = np.array([[[200, 100, 50], [0, 255, 10]]], np.uint8)
    alpha = np.array([[[0], [255]]], np.uint8)
    path = _save(Image.fromarray(np.concatenate([rgb, alpha], -1)), tmp_path / "rgba.png")
    assert Image.open(path).mode == "RGBA"
    assert np.allclose(load_image(path), rgb / 255, atol=1e-6)


def test_p_goes_through_its_palette(tmp_path):
    index = np.array([[0, 1], [2, 1]], np.uint8)
    pal = Image.fromarray(index).convert("P")
    pal.putpalette([0, 0, 0, 255, 0, 0, 10, 20, 30] + [0] * (253 * 3))
    path = _save(pal, tmp_path / "p.png")
    assert Image.open(path).mode == "P"
    colours = np.array([[0, 0, 0], [255, 0, 0], [10, 20, 30]], np.float32) / 255
    assert np.allclose(load_image(path), colours[index], atol=1e-6)


def test_bilevel_1_is_zero_or_one(tmp_path):
    bits = np.array([[True, False], [False, True]])
    path = _save(Image.fromarray(bits), tmp_path / "one.png")
    assert Image.open(path).mode == "1"
    assert np.array_equal(load_image(path)[..., 1], bits.astype(np.float32))


@pytest.mark.parametrize("fmt", ["png", "tif"])
def test_i16_keeps_its_range_and_gradient(tmp_path, fmt):
    ramp = _gradient16()
    path = _save(Image.fromarray(ramp), tmp_path / f"ramp16.{fmt}")
    assert Image.open(path).mode == "I;16"
    img = load_image(path)
    assert img.shape == (4, 256, 3)
    assert np.allclose(img[..., 0], ramp / 65535.0, atol=1e-6)
    row = img[0, :, 0]
    assert row[0] == 0.0 and row[-1] == 1.0
    assert np.all(np.diff(row) > 0)  # every step of the ramp survives: no saturation
    # the bug this guards against: clipping at 255 made ~98 % of a ramp pure white
    assert (img == 1.0).mean() < 0.01


def test_i16_known_values(tmp_path):
    values = np.array([[0, 255, 256, 32768, 65535]], np.uint16)
    img = load_image(_save(Image.fromarray(values), tmp_path / "values16.png"))[0, :, 0]
    assert img[0] == 0.0 and img[-1] == 1.0
    assert img[3] == pytest.approx(0.5, abs=1e-4)
    assert img[1] == pytest.approx(255 / 65535) and img[1] < img[2]


def test_i16_big_endian_tiff(tmp_path):
    ramp = _gradient16()
    big = Image.frombytes("I;16B", (ramp.shape[1], ramp.shape[0]), ramp.astype(">u2").tobytes())
    path = _save(big, tmp_path / "ramp16b.tif")
    assert Image.open(path).mode == "I;16B"
    assert np.allclose(load_image(path)[..., 0], ramp / 65535.0, atol=1e-6)


def test_i16_resize_keeps_the_gradient(tmp_path):
    ramp = np.tile(np.round(np.linspace(0, 65535, 64)).astype(np.uint16), (64, 1))
    img = load_image(_save(Image.fromarray(ramp), tmp_path / "ramp.png"), 32)
    row = img[16, :, 0]
    assert img.shape == (32, 32, 3) and 0.0 <= img.min() and img.max() <= 1.0
    assert np.all(np.diff(row) > 0)
    assert row[0] < 0.02 and row[-1] > 0.98


def test_i32_is_scaled_by_its_bit_depth(tmp_path):
    values = np.array([[0, 2**30, 2**31 - 1, -5, 65535]], np.int32)
    path = _save(Image.fromarray(values), tmp_path / "i32.tif")
    assert Image.open(path).mode == "I"
    img = load_image(path)[0, :, 0]
    assert img[0] == 0.0 and img[2] == 1.0 and img[3] == 0.0  # negatives clip to 0
    assert img[1] == pytest.approx(0.5, abs=1e-6)
    assert img[4] == pytest.approx(65535 / (2**31 - 1))


def test_i_decoded_from_16_bit_samples_is_scaled_by_16_bits():
    # 16-bit PNGs open as mode I on older Pillow (raw mode I;16B); signed 16-bit TIFF as I;16S.
    assert _int_max("I;16B") == 65535 and _int_max("I;16") == 65535
    assert _int_max("I;16S") == 32767 and _int_max("I;16BS") == 32767
    assert _int_max("I;32S") == _int_max("I") == _int_max(None) == 2**31 - 1


def test_f_in_unit_range_is_taken_as_is(tmp_path):
    values = np.array([[0.0, 0.25, 0.5, 1.0]], np.float32)
    path = _save(Image.fromarray(values), tmp_path / "f.tif")
    assert Image.open(path).mode == "F"
    assert np.array_equal(load_image(path)[0, :, 0], values[0])
    assert load_image(path, 8).shape == (8, 8, 3)
    assert image_size(path) == (4, 1)


@pytest.mark.parametrize(("values", "why"), [
    ([0.0, 128.0, 255.0], r"values in \[0, 255\]"),
    ([0.0, np.nan, 1.0], "NaN"),
])
def test_f_outside_unit_range_is_refused_naming_the_file(tmp_path, values, why):
    path = _save(Image.fromarray(np.array([values], np.float32)), tmp_path / "f255.tif")
    with pytest.raises(DatasetError, match=rf"{path}.*{why}"):
        load_image(path)
    with pytest.raises(DatasetError, match=str(path)):
        image_size(path)  # the manifest's check: refused there, not in training


def test_cmyk_is_converted(tmp_path):
    cmyk = np.array([[[0, 0, 0, 0], [0, 255, 255, 0], [0, 0, 0, 255]]], np.uint8)
    path = _save(Image.frombytes("CMYK", (3, 1), cmyk.tobytes()), tmp_path / "cmyk.tif")
    assert Image.open(path).mode == "CMYK"
    expected = np.array([[[1, 1, 1], [1, 0, 0], [0, 0, 0]]], np.float32)
    assert np.array_equal(load_image(path), expected)


# ---------------------------------------------------------------- masks


def test_mask_any_positive_value_nearest_resize(tmp_path):
    ones = write_mask(tmp_path / "visa_style.png", (40, 40), on=1)  # VisA stores 0/1
    mask = load_mask(ones, 20)
    assert mask.dtype == bool and mask.shape == (20, 20)
    assert mask.sum() == 5 * 5  # the 10x10 square at full size
    palette = Image.fromarray(np.array([[0, 2], [2, 0]], np.uint8)).convert("P")
    palette.putpalette([0, 0, 0] * 256)  # every colour black: indices must decide
    palette.save(tmp_path / "palette.png")
    assert load_mask(tmp_path / "palette.png").tolist() == [[False, True], [True, False]]


@pytest.mark.parametrize("on", [65535, 256, 1])
def test_mask_16_bit(tmp_path, on):
    raw = np.zeros((40, 40), np.uint16)
    raw[10:20, 10:20] = on  # 256 would be 0 if squeezed into its low byte
    path = _save(Image.fromarray(raw), tmp_path / "mask16.png")
    assert Image.open(path).mode == "I;16"
    assert np.array_equal(load_mask(path), raw > 0)
    small = load_mask(path, 20)
    assert small.sum() == 5 * 5 and small[5:10, 5:10].all()


def test_mask_alpha_is_not_the_mask(tmp_path):
    la = np.zeros((2, 2, 2), np.uint8)
    la[..., 1] = 255  # opaque everywhere
    la[0, 1, 0] = 255
    path = _save(Image.fromarray(la), tmp_path / "la_mask.png")
    assert load_mask(path).tolist() == [[False, True], [False, False]]
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 3] = 255
    rgba[1, 0, 2] = 7
    path = _save(Image.fromarray(rgba), tmp_path / "rgba_mask.png")
    assert load_mask(path).tolist() == [[False, False], [True, False]]


def test_mask_bilevel_and_float(tmp_path):
    bits = np.array([[True, False], [False, False]])
    assert load_mask(_save(Image.fromarray(bits), tmp_path / "m1.png")).tolist() == bits.tolist()
    floats = np.array([[0.0, 0.5], [0.0, 0.0]], np.float32)
    path = _save(Image.fromarray(floats), tmp_path / "mf.tif")
    assert load_mask(path).tolist() == [[False, True], [False, False]]


# --- decoded once: the training cache (diffad.data.image_cache) ----------------------------

def test_training_images_are_decoded_once_and_read_back_as_decoded(tmp_path):
    import os

    import torch

    from diffad.data.image_cache import CachedImages, IndexedImages, cached_images
    from diffad.data.loader import ImageFiles

    paths = [str(write_png(tmp_path / "img" / f"{i}.png", (40 + 7 * i, 30))) for i in range(5)]
    cache = tmp_path / "cache"
    cached = CachedImages(paths, 32, cache)
    decoded = ImageFiles(paths, 32)
    for i in range(5):  # 8-bit files resized as load_image resizes them: the same values
        torch.testing.assert_close(cached[i], decoded[i], atol=0.5 / 255, rtol=0)
    (array,) = (cache / "images").iterdir()
    # A second run reads the file it wrote, decoding nothing.
    stamp = array.stat().st_mtime_ns
    again = cached_images(paths, 32, cache)
    assert again.shape == (5, 3, 32, 32) and array.stat().st_mtime_ns == stamp
    # Another side, or an image rewritten in place, is another array.
    cached_images(paths, 16, cache)
    write_png(tmp_path / "img" / "0.png", (44, 30))
    os.utime(paths[0], ns=(1, 1))
    cached_images(paths, 32, cache)
    assert len(list((cache / "images").iterdir())) == 3
    image, row = IndexedImages(paths, 32, cache)[3]
    assert row == 3 and image.shape == (3, 32, 32)
    # Without a cache folder the images are decoded as before.
    torch.testing.assert_close(CachedImages(paths, 32, None)[1], decoded[1])


def test_posteriors_encoded_once_draw_what_encoding_each_step_draws():
    import torch

    from diffad.models.posterior import Posteriors
    from diffad.weights.tiny import tiny_sd_vae

    vae = tiny_sd_vae().eval()
    images = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))

    def encode(x):
        posterior = vae.encode(x * 2 - 1).latent_dist
        return posterior.mean, posterior.std

    cached = Posteriors(encode, [(images[i], i) for i in range(6)], batch_size=4)
    rows = [4, 1, 1]
    once = cached.sample(rows, torch.Generator().manual_seed(3), torch.device("cpu"))
    with torch.no_grad():
        mean, std = encode(images[rows])
    each = mean + std * torch.randn(mean.shape, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(once, each, rtol=1e-4, atol=1e-5)
    assert Posteriors.fits(1000, (4, 32, 32)) and not Posteriors.fits(10**6, (4, 64, 64))
    # The size check reads the latent shape from the first image and keeps what fits.
    kept = Posteriors.within_limit(encode, [(images[i], i) for i in range(6)], batch_size=4)
    torch.testing.assert_close(kept.mean, cached.mean)
