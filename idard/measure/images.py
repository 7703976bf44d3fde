"""Reading images into one canonical form: float32 RGB in [0, 1], shape (H, W, 3).

Every HR image, whatever its file format, bit depth or colour mode, becomes the same kind
of array, so downscalers, models and metrics never see format quirks. Two decisions here
affect every number the tool reports, so they are made once, in this module:

* **Size policy.** An HR image whose sides are not multiples of the scale factor is
  centre-cropped to the largest multiple (`crop_to_multiple`). Cropping rather than
  resizing keeps HR pixels untouched; centring keeps the crop independent of orientation.
* **Alpha.** Transparency is discarded (colour channels kept), as ``PIL.Image.convert``
  does; IDA-RD measures colour information, not compositing.

Pillow decodes 16-bit RGB(A) PNG and TIFF only after truncating to 8 bits, so those two
are read with ``pypng`` and ``tifffile`` instead, keeping all 16 bits.

**One size limit for every decoder.** A few hundred compressed bytes can hold an image
of billions of pixels (a decompression bomb). Pillow refuses those before decoding, but
pypng and tifffile do not, so each decoder here reads the header first and refuses an
image of more than `max_image_pixels` pixels: Pillow's ``Image.MAX_IMAGE_PIXELS``, set
from ``$IDARD_MAX_IMAGE_PIXELS`` when given (``0`` turns the limit off).

The limit holds per *image*, not per page: a file of many pages or frames, each under the
limit, would add up past it (a 530 KB TIFF of 6 pages held 486 Mpx). So only the first
page of a TIFF is decoded (as Pillow decodes only the first frame of a GIF, APNG or WebP),
and a page is refused from its header when its samples per pixel make it hold more
values than an RGBA image at the limit, or when it is a volume (``ImageDepth`` > 1).
"""

from __future__ import annotations

import dataclasses
import io
import os
import warnings
from pathlib import Path

from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps

if TYPE_CHECKING:  # torch is imported where tensors are made: reading and labelling need none
    import tifffile
    import torch

SUPPORTED_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp")
ENV_MAX_PIXELS = "IDARD_MAX_IMAGE_PIXELS"


class ImageError(ValueError):
    """An image file that cannot be used; the message names the file."""


def _configure_pixel_limit() -> None:
    value = os.environ.get(ENV_MAX_PIXELS, "").strip()
    if value:
        try:
            limit = int(value)
        except ValueError:
            raise ImageError(f"${ENV_MAX_PIXELS}={value!r}: not an integer number of pixels") from None
        Image.MAX_IMAGE_PIXELS = limit if limit > 0 else None


_configure_pixel_limit()


def max_image_pixels() -> int | None:
    """The largest image (in pixels) any decoder here accepts; None when unlimited."""
    return Image.MAX_IMAGE_PIXELS


class _TooLarge(ImageError):
    pass


def _check_size(width: int, height: int) -> None:
    """Refuse a too-large image from its header, before any pixel is decoded."""
    limit = max_image_pixels()
    if limit is not None and width * height > limit:
        raise _TooLarge(f"{width}x{height} = {width * height} pixels is more than the limit of {limit} "
                        f"(${ENV_MAX_PIXELS}, default Pillow's MAX_IMAGE_PIXELS); refused before decoding")


@dataclasses.dataclass(frozen=True, eq=False)
class RGBImage:
    """A decoded image. ``name`` (the file stem) is its key in records."""

    name: str
    pixels: np.ndarray  # float32, (H, W, 3), values in [0, 1]
    bit_depth: int = 8
    source: str = ""

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    def with_pixels(self, pixels: np.ndarray) -> "RGBImage":
        return dataclasses.replace(self, pixels=pixels)


def _to_rgb(array: np.ndarray, max_value: float) -> np.ndarray:
    """Integer or float array with 1-4 channels -> float32 RGB in [0, 1].

    The channels are picked on the decoded array and the result is written in place, so
    the only float array is the result (12 bytes per pixel): converting, repeating and
    clipping whole arrays held three float copies, 3.2 GB for one image at the limit.
    """
    x = array[:, :, None] if array.ndim == 2 else array
    if x.ndim != 3:
        raise ValueError(f"a {array.ndim}-D array of shape {array.shape} is not an image")  # named by decode_image
    x = x[:, :, :1] if x.shape[2] in (1, 2) else x[:, :, :3]  # grey (+ alpha) | RGB (+ alpha dropped)
    rgb = np.empty((x.shape[0], x.shape[1], 3), np.float32)
    # float32 arithmetic, as x.astype(float32) / float32(max_value) is; grey broadcasts to 3
    np.divide(x, np.float32(max_value), out=rgb, dtype=np.float32, casting="unsafe")
    return np.clip(rgb, 0.0, 1.0, out=rgb)


def _read_png16(data: bytes) -> np.ndarray | None:
    """16-bit PNG pixels with all bits, or None when the PNG is 8-bit or less."""
    import png  # pypng: pure-Python decoder, used only for 16-bit files

    reader = png.Reader(bytes=data)
    reader.preamble()  # the header only
    _check_size(reader.width, reader.height)
    width, height, rows, info = reader.asDirect()
    if info["bitdepth"] != 16:
        return None
    planes = info["planes"]
    data = np.vstack([np.asarray(row, dtype=np.uint16) for row in rows])
    return data.reshape(height, width, planes)


#: The most samples per pixel an image at the pixel limit may hold (RGBA).
MAX_SAMPLES = 4


def _check_tiff_page(page: "tifffile.TiffPage") -> None:
    """Refuse, from its header, a page that would decode to more than an RGBA image at
    the pixel limit: the limit counts pixels, and a page may hold thousands of samples
    per pixel (``SamplesPerPixel`` is 16-bit) or be a stack of planes (``ImageDepth``)."""
    _check_size(int(page.imagewidth), int(page.imagelength))
    if int(page.imagedepth) > 1:
        raise _TooLarge(f"a volume of {page.imagedepth} planes, not an image; refused before decoding")
    limit = max_image_pixels()
    samples = int(page.samplesperpixel)
    if limit is not None and samples > MAX_SAMPLES and page.imagewidth * page.imagelength * samples > MAX_SAMPLES * limit:
        raise _TooLarge(f"{page.imagewidth}x{page.imagelength} pixels of {samples} samples per pixel is more values "
                        f"than an RGBA image at the limit of {limit} pixels; refused before decoding")


def _read_tiff(raw: bytes) -> tuple[np.ndarray, int] | None:
    """The first page of a TIFF (pages after it are never decoded), or None for a sample
    type that Pillow decodes instead."""
    import tifffile

    with tifffile.TiffFile(io.BytesIO(raw)) as tif:
        page = tif.pages.first
        _check_tiff_page(page)
        if page.dtype not in (np.uint8, np.uint16):
            return None  # let Pillow try the rarer layouts (it too decodes the first frame only)
        data = _interleaved(page.asarray(), page.shaped)
    return data, 16 if data.dtype == np.uint16 else 8


def _interleaved(data: np.ndarray, shaped: tuple[int, ...]) -> np.ndarray:
    """(H, W, samples) of a page, whether its samples are stored interleaved or as planes
    (``PlanarConfiguration`` 2, which tifffile returns as (samples, H, W))."""
    data = data.reshape(shaped)[:, 0]  # shaped: (separate samples, depth 1, length, width, contig samples)
    return np.moveaxis(data[..., 0], 0, -1) if shaped[0] > 1 else data[0]


def _read_with_pillow(data: bytes) -> tuple[np.ndarray, float, int]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused below, with the others
        opened = Image.open(io.BytesIO(data))
    with opened:
        _check_size(*opened.size)
        opened.load()  # decode now: truncated files fail here, not later
        # EXIF orientation applied, as every viewer shows the photo (a phone's portrait
        # JPEG is stored sideways); the HR image is the picture, not the sensor's rows.
        img = ImageOps.exif_transpose(opened) or opened
        mode = img.mode
        if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
            return np.asarray(img, dtype=np.uint16), 65535.0, 16
        if mode == "I":
            arr = np.asarray(img, dtype=np.int64)
            top = 65535.0 if arr.max(initial=0) > 255 else 255.0
            return arr, top, 16 if top > 255 else 8
        if mode == "F":
            return np.asarray(img, dtype=np.float32), 1.0, 32
        if mode in ("1", "L", "LA", "RGB", "RGBA"):
            return np.asarray(img), 1.0 if mode == "1" else 255.0, 8
        # palette, CMYK, YCbCr, LAB, ...: Pillow knows how to make RGB of them
        return np.asarray(img.convert("RGBA" if "transparency" in img.info else "RGB")), 255.0, 8


def load_image(path: str | Path, name: str | None = None) -> RGBImage:
    """Decode one image file; raises `ImageError` naming the file if it is unusable."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such image file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return decode_image(data, name=name or path.stem, source=str(path))


def decode_image(data: bytes, name: str, source: str) -> RGBImage:
    """Decode the bytes of an image file; ``source`` (path or URI) names it in errors.

    Decoding from bytes lets a distributed run ship the compressed file to a worker, not
    the float pixels, which are ten times larger.
    """
    try:
        suffix = Path(source).suffix.lower()
        decoded: tuple[np.ndarray, float, int] | None = None
        if suffix == ".png":
            png16 = _read_png16(data)
            if png16 is not None:
                decoded = (png16, 65535.0, 16)
        elif suffix in (".tif", ".tiff"):
            tiff = _read_tiff(data)
            if tiff is not None:
                decoded = (tiff[0], 65535.0 if tiff[1] == 16 else 255.0, tiff[1])
        if decoded is None:
            decoded = _read_with_pillow(data)
        array, max_value, bit_depth = decoded
        pixels = _to_rgb(array, max_value)
    except _TooLarge as exc:
        raise ImageError(f"{source}: {exc}") from None
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:  # Pillow's own refusal, past twice the limit
        raise ImageError(f"{source}: {exc}; refused before decoding (${ENV_MAX_PIXELS})") from None
    except Exception as exc:  # PIL, pypng and tifffile raise their own error classes
        raise ImageError(f"{source}: cannot decode image ({type(exc).__name__}: {exc})") from None
    if pixels.shape[0] == 0 or pixels.shape[1] == 0:
        raise ImageError(f"{source}: image has no pixels")
    return RGBImage(name=name, pixels=pixels, bit_depth=bit_depth, source=source)


def crop_to_multiple(image: RGBImage, scale: int) -> RGBImage:
    """Centre-crop so both sides are multiples of ``scale`` (the project's size policy).

    Raises `ImageError` when the image is smaller than one LR pixel per side.
    """
    h, w = image.height, image.width
    new_h, new_w = h - h % scale, w - w % scale
    if new_h == 0 or new_w == 0:
        raise ImageError(
            f"{image.source or image.name}: {w}x{h} is smaller than the scale factor {scale}"
        )
    if (new_h, new_w) == (h, w):
        return image
    top, left = (h - new_h) // 2, (w - new_w) // 2
    return image.with_pixels(np.ascontiguousarray(image.pixels[top : top + new_h, left : left + new_w]))


def quantize_8bit(pixels: np.ndarray) -> np.ndarray:
    """Round to the 8-bit grid, as writing a PNG would; stays float32 in [0, 1]."""
    return (np.round(np.clip(pixels, 0.0, 1.0) * 255.0) / 255.0).astype(np.float32)


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    return np.round(np.clip(pixels, 0.0, 1.0) * 255.0).astype(np.uint8)


def is_8bit_grid(pixels: np.ndarray) -> bool:
    """True when every value is k/255: such an image is exactly an 8-bit image."""
    scaled = pixels.astype(np.float64) * 255.0
    return bool(np.all(np.abs(scaled - np.round(scaled)) < 1e-4))


def save_image(path: str | Path, pixels: np.ndarray) -> Path:
    """Write float RGB in [0, 1] as an 8-bit image (format from the suffix)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_uint8(pixels), "RGB").save(path)
    return path


def to_tensor(pixels: np.ndarray | list[np.ndarray], device: torch.device | str = "cpu") -> torch.Tensor:
    """(H, W, 3) array(s) -> float32 (N, 3, H, W) tensor on ``device``."""
    import torch

    stack = np.stack(pixels) if isinstance(pixels, list) else pixels[None]
    return torch.from_numpy(np.ascontiguousarray(stack.transpose(0, 3, 1, 2))).to(device)


def to_pixels(tensor: torch.Tensor) -> np.ndarray:
    """(3, H, W) tensor -> float32 (H, W, 3) array (values unchanged)."""
    import torch

    return tensor.detach().to("cpu", torch.float32).permute(1, 2, 0).numpy()


def find_images(folder: str | Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name, for reproducible order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageError(f"{folder}: not a folder of images")
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES)
