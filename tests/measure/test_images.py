"""Reading any common image file into float RGB in [0, 1], and the HR size policy."""

from __future__ import annotations

import io
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from idard.measure.images import ImageError, RGBImage, crop_to_multiple, decode_image, load_image, save_image

RNG = np.random.default_rng(0)
RGB8 = RNG.integers(0, 256, size=(13, 17, 3), dtype=np.uint8)


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif", ".webp"])
def test_lossless_8bit_rgb_formats_decode_exactly(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"img{suffix}"
    Image.fromarray(RGB8).save(path, lossless=True) if suffix == ".webp" else Image.fromarray(RGB8).save(path)
    image = load_image(path)
    assert image.name == "img" and image.bit_depth == 8
    assert image.pixels.dtype == np.float32 and image.pixels.shape == (13, 17, 3)
    np.testing.assert_array_equal(np.round(image.pixels * 255).astype(np.uint8), RGB8)


def test_jpeg_decodes_to_rgb_in_unit_range(tmp_path: Path) -> None:
    Image.fromarray(RGB8).save(tmp_path / "a.jpg", quality=95)
    pixels = load_image(tmp_path / "a.jpg").pixels
    assert pixels.shape == (13, 17, 3) and 0.0 <= pixels.min() and pixels.max() <= 1.0


def test_grey_palette_and_rgba_become_rgb(tmp_path: Path) -> None:
    grey = RGB8[:, :, 0]
    Image.fromarray(grey, "L").save(tmp_path / "grey.png")
    np.testing.assert_allclose(load_image(tmp_path / "grey.png").pixels, np.repeat(grey[:, :, None] / 255.0, 3, 2), atol=1e-7)

    rgba = np.dstack([RGB8, np.full(RGB8.shape[:2], 7, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    np.testing.assert_allclose(load_image(tmp_path / "rgba.png").pixels, RGB8 / 255.0, atol=1e-7)

    palette = Image.fromarray(RGB8).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette.save(tmp_path / "pal.png")
    expected = np.asarray(palette.convert("RGB")) / 255.0
    np.testing.assert_allclose(load_image(tmp_path / "pal.png").pixels, expected, atol=1e-7)


def _write_png16_rgb(path: Path, array: np.ndarray) -> None:
    """A minimal 16-bit RGB PNG writer, so the test does not trust the reader's own library."""
    h, w, _ = array.shape
    raw = b"".join(b"\x00" + array[y].astype(">u2").tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_16bit_png_and_tiff_keep_all_16_bits(tmp_path: Path) -> None:
    deep = RNG.integers(0, 65536, size=(9, 11, 3), dtype=np.uint16)
    _write_png16_rgb(tmp_path / "deep.png", deep)
    tifffile.imwrite(tmp_path / "deep.tif", deep)
    Image.fromarray(deep[:, :, 0].astype(np.uint16)).save(tmp_path / "grey16.png")
    for name in ("deep.png", "deep.tif"):
        image = load_image(tmp_path / name)
        assert image.bit_depth == 16
        np.testing.assert_allclose(image.pixels, deep / 65535.0, atol=1e-7)
    grey = load_image(tmp_path / "grey16.png")
    assert grey.bit_depth == 16
    np.testing.assert_allclose(grey.pixels[:, :, 1], deep[:, :, 0] / 65535.0, atol=1e-7)


def test_broken_files_raise_an_error_naming_the_file(tmp_path: Path) -> None:
    Image.fromarray(RGB8).save(tmp_path / "ok.png")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes((tmp_path / "ok.png").read_bytes()[:60])
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    for path in (truncated, text, tmp_path / "missing.png"):
        with pytest.raises(ImageError, match=path.name):
            load_image(path)


def test_bytes_decode_exactly_as_the_file_and_errors_name_the_source(tmp_path: Path) -> None:
    """Workers receive compressed bytes, not paths: the decoding must not differ."""
    deep = RNG.integers(0, 65536, size=(5, 7, 3), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "deep.tif", deep)
    Image.fromarray(RGB8).save(tmp_path / "ok.webp", lossless=True)
    for name in ("deep.tif", "ok.webp"):
        from_bytes = decode_image((tmp_path / name).read_bytes(), name="x", source=f"s3://bucket/{name}")
        from_file = load_image(tmp_path / name)
        np.testing.assert_array_equal(from_bytes.pixels, from_file.pixels)
        assert from_bytes.bit_depth == from_file.bit_depth
    with pytest.raises(ImageError, match="s3://bucket/cut.png: cannot decode"):
        decode_image((tmp_path / "ok.webp").read_bytes()[:40], name="cut", source="s3://bucket/cut.png")


def test_crop_to_multiple_is_centred_and_never_resamples() -> None:
    pixels = RNG.random((10, 15, 3)).astype(np.float32)
    cropped = crop_to_multiple(RGBImage("x", pixels), 4)
    assert cropped.pixels.shape == (8, 12, 3)
    np.testing.assert_array_equal(cropped.pixels, pixels[1:9, 1:13])
    same = RGBImage("y", pixels[:8, :12])
    assert crop_to_multiple(same, 4) is same


def test_crop_rejects_images_smaller_than_the_scale() -> None:
    with pytest.raises(ImageError, match="smaller than the scale factor 8"):
        crop_to_multiple(RGBImage("tiny", np.zeros((5, 40, 3), np.float32), source="tiny.png"), 8)


def test_save_then_load_round_trips_8bit(tmp_path: Path) -> None:
    pixels = RGB8 / np.float32(255)
    np.testing.assert_allclose(load_image(save_image(tmp_path / "o.png", pixels)).pixels, pixels, atol=1e-7)


def _png16(width: int, height: int) -> bytes:
    """A 16-bit RGB PNG of zeros: megapixels in kilobytes (what a decompression bomb is)."""
    import png

    row = np.zeros(width * 3, dtype=np.uint16)
    buffer = io.BytesIO()
    png.Writer(width, height, bitdepth=16, greyscale=False, compression=9).write(buffer, (row for _ in range(height)))
    return buffer.getvalue()


@pytest.mark.parametrize("suffix", [".png", ".tif", ".jpg"])
def test_one_pixel_limit_refuses_every_format_before_decoding(suffix: str, monkeypatch) -> None:
    """pypng (16-bit PNG) and tifffile once decoded anything: a 381 KB PNG took 5.9 GB."""
    import tifffile

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    buffer = io.BytesIO()
    if suffix == ".png":
        data = _png16(50, 40)
    elif suffix == ".tif":
        tifffile.imwrite(buffer, np.zeros((40, 50, 3), np.uint16))
        data = buffer.getvalue()
    else:
        Image.new("RGB", (50, 40)).save(buffer, "JPEG")
        data = buffer.getvalue()
    with pytest.raises(ImageError, match=rf"big{suffix}: 50x40 = 2000 pixels is more than the limit of 1000"):
        decode_image(data, "big", f"big{suffix}")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)
    assert decode_image(data, "big", f"big{suffix}").pixels.shape == (40, 50, 3)


def _png_header_only(width: int, height: int) -> bytes:
    """A 16-bit RGB PNG that claims ``width`` x ``height``: a bomb is refused from this much."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def test_a_16bit_png_bomb_is_refused_at_once() -> None:
    data = _png_header_only(14000, 14000)  # 196 Mpx: pypng alone took 5.9 GB and 37 s
    started = time.perf_counter()
    with pytest.raises(ImageError, match="refused before decoding"):
        decode_image(data, "bomb", "bomb.png")
    assert time.perf_counter() - started < 1.0


def test_the_pixel_limit_is_configured_by_environment(monkeypatch) -> None:
    from idard.measure import images

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # restored after the test
    monkeypatch.setenv("IDARD_MAX_IMAGE_PIXELS", "1234")
    images._configure_pixel_limit()  # what importing the module does in every process
    assert images.max_image_pixels() == 1234 == Image.MAX_IMAGE_PIXELS
    monkeypatch.setenv("IDARD_MAX_IMAGE_PIXELS", "0")
    images._configure_pixel_limit()
    assert images.max_image_pixels() is None


def _zero_pages(path: Path, pages: int, side: int, samples: int = 1) -> Path:
    """A TIFF of ``pages`` all-zero ``side`` x ``side`` pages, small on disk: one deflate
    tile per page, compressed once and written as is (no page is ever held in memory)."""
    tile = zlib.compress(bytes(side * side * samples), 9)
    shape = (side, side, samples) if samples > 1 else (side, side)
    with tifffile.TiffWriter(path) as tif:
        for _ in range(pages):
            tif.write(iter([tile]), shape=shape, dtype=np.uint8, tile=(side, side), compression="zlib",
                      photometric="minisblack", planarconfig="contig", metadata=None)
    return path


def test_a_multi_page_tiff_is_read_as_its_first_page(tmp_path: Path) -> None:
    """tifffile's asarray() stacked every page: 3 pages became a (3, H, 3) 'image'."""
    pages = np.random.default_rng(0).integers(0, 256, (3, 6, 8, 3), dtype=np.uint8)
    with tifffile.TiffWriter(tmp_path / "pages.tif") as tif:
        for page in pages:
            tif.write(page, photometric="rgb", metadata=None)
    image = load_image(tmp_path / "pages.tif")
    np.testing.assert_array_equal(image.pixels, pages[0] / np.float32(255))


def test_tiff_pages_under_the_limit_never_add_up_past_it(tmp_path: Path) -> None:
    """A 530 KB 6-page TIFF (each page under the limit, 486 Mpx in all) took a worker to
    3.44 GB; 12 pages to 4.7 GB. Here 24 pages of 4 Mpx (the limit set to one page) are
    decoded, in a child capped at 512 MiB, as one page: the 96 Mpx in all are never decoded."""
    from tests.guarded import run_guarded

    path = _zero_pages(tmp_path / "pages.tif", pages=24, side=2048)
    assert path.stat().st_size < 200_000
    decoded = run_guarded(f"""
import os
os.environ["IDARD_MAX_IMAGE_PIXELS"] = str(2048 * 2048)
from idard.measure.images import load_image
_report(list(load_image({str(path)!r}).pixels.shape))
""", memory_bytes=512 << 20, timeout_s=60)
    assert decoded.result == [2048, 2048, 3]
    assert decoded.peak_rss < 300 << 20  # one page, float RGB: 48 MiB over the interpreter's own


def test_a_tiff_page_of_many_samples_is_refused_before_decoding(tmp_path: Path, monkeypatch) -> None:
    """The pixel limit counts pixels; a page of 64 x 64 pixels with 4,000 samples each
    holds as many values as a 16 Mpx RGBA image and is refused from its header."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 64 * 64)
    data = _zero_pages(tmp_path / "wide.tif", pages=1, side=64, samples=4000).read_bytes()
    with pytest.raises(ImageError, match=r"wide.tif: .*4000 samples per pixel.*refused before decoding"):
        decode_image(data, "wide", "wide.tif")


def test_a_tiff_of_colour_planes_decodes_as_rgb(tmp_path: Path) -> None:
    """PlanarConfiguration 2 (one plane per colour): tifffile returns (3, H, W), which was
    read as H = 3 rows of W pixels."""
    planes = np.random.default_rng(0).integers(0, 65536, (3, 10, 12), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "planar.tif", planes, photometric="rgb", planarconfig="separate")
    image = load_image(tmp_path / "planar.tif")
    assert image.bit_depth == 16
    np.testing.assert_array_equal(image.pixels, np.moveaxis(planes, 0, -1) / np.float32(65535))
