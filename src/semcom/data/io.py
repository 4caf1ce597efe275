"""Reading and writing images as float tensors.

Convention: an image is a ``float32`` tensor ``[3, H, W]`` with RGB values in ``[0, 1]``.

:func:`load_image` reads anything Pillow can identify and decode and normalises it:

* 8-bit modes (``1``, ``L``, ``P``, ``RGB``, ``CMYK``, ``YCbCr``, ...) become RGB with values
  ``k / 255`` (grayscale is replicated to three channels);
* transparency (``RGBA``, ``LA``, ``PA``, ``P``/``L``/``RGB`` with a ``tRNS`` key) is
  **composited over white**: ``out = rgb * a + (1 - a)``, so transparent pixels read as white
  (the usual look of a transparent image on a page) instead of the arbitrary colour stored
  under zero alpha;
* 16-bit grayscale (``I;16``, ``I;16B``, ``I;16L``, ``I``) keeps full precision:
  ``value / 65535`` (``I`` is clipped to ``[0, 65535]``); ``F`` is clipped to ``[0, 1]``;
* 16-bit RGB / RGBA (PNG, uncompressed TIFF): Pillow 13 has no 16-bit RGB mode and decodes
  them to 8-bit ``RGB`` keeping only the high byte. We decode the file a second time with the
  byte order swapped in the unpacker (which yields the low byte) and recombine, so these
  load at full 16-bit precision too (``value / 65535``). If that trick does not apply
  (e.g. compressed TIFF through libtiff, 16-bit gray+alpha PNG) the 8-bit decode is used;
* the EXIF orientation tag is applied (:func:`PIL.ImageOps.exif_transpose`).

Every failure (missing file, not an image, corrupt or truncated data, unsupported mode)
raises :class:`ImageReadError` with a one-line message naming the file.

:func:`to_uint8` is the 8-bit quantisation used everywhere (saving, PSNR):
``round(clamp(x, 0, 1) * 255)``; a load/save round trip is exact for 8-bit images.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import cast

import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from ..paths import atomic_path

__all__ = [
    "ImageReadError",
    "image_size",
    "is_transparent",
    "load_image",
    "save_image",
    "to_uint8",
]

PathLike = str | os.PathLike


class ImageReadError(ValueError):
    """An image file is missing, unreadable, corrupt or not an image."""


_GRAY16 = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_ALPHA_MODES = ("LA", "La", "PA", "RGBA", "RGBa")
# 16-bit colour rawmodes -> the same layout with the other byte order; decoding a file
# with the swapped rawmode makes Pillow's unpacker keep the low byte instead of the high.
_SWAP16: dict[str | None, str] = {  # keyed by what _rawmode finds (None: no rawmode)
    f"{m};16{e}": f"{m};16{o}" for m in ("RGB", "RGBA", "RGBX") for e, o in (("B", "L"), ("L", "B"))
}


def _fail(path: PathLike, reason: str) -> ImageReadError:
    reason = " ".join(str(reason).split())  # one line
    return ImageReadError(f"cannot read image {os.fspath(path)!r}: {reason}")


def _composite_white(rgba: np.ndarray, max_value: float) -> np.ndarray:
    """``[H, W, 4]`` integer array -> ``[H, W, 3]`` float32 in [0, 1], alpha over white."""
    x = rgba.astype(np.float64) / max_value
    a = x[..., 3:]
    return (x[..., :3] * a + (1.0 - a)).astype(np.float32)


def _rawmode(tile) -> str | None:
    args = tile.args if hasattr(tile, "args") else tile[3]
    if isinstance(args, tuple):
        args = args[0] if args else None
    return args if isinstance(args, str) else None


def _swap_tile(tile, new_raw: str):
    args = tile.args if hasattr(tile, "args") else tile[3]
    new_args = (new_raw, *args[1:]) if isinstance(args, tuple) else new_raw
    if hasattr(tile, "_replace"):
        return tile._replace(args=new_args)
    return (*tile[:3], new_args)


def _load_rgb16(path: PathLike, first: ImageFile.ImageFile) -> np.ndarray | None:
    """Full-precision ``[H, W, C]`` uint16 for a 16-bit RGB(A) file, or None if n/a.

    ``first`` is the freshly opened (not yet loaded) image whose tiles decode the high byte.
    """
    if first.mode not in ("RGB", "RGBA") or not first.tile:
        return None
    raws = [_rawmode(t) for t in first.tile]
    if any(r not in _SWAP16 for r in raws) or first.tile[0][0] not in ("zip", "raw"):
        return None
    if getattr(first, "n_frames", 1) != 1:
        return None
    try:
        with Image.open(path) as second:
            if [_rawmode(t) for t in second.tile] != raws or second.size != first.size:
                return None
            second.tile = [
                _swap_tile(t, _SWAP16[r]) for t, r in zip(second.tile, raws, strict=True)
            ]
            second.load()
            lo_img = ImageOps.exif_transpose(second)
            lo = np.asarray(lo_img, dtype=np.uint16)
    except Exception:
        return None
    first.load()
    hi = np.asarray(ImageOps.exif_transpose(first), dtype=np.uint16)
    if hi.shape != lo.shape:
        return None
    return (hi << 8) | lo


def _to_float_rgb(img: Image.Image) -> np.ndarray:
    """Loaded (and orientation-corrected) Pillow image -> ``[H, W, 3]`` float32 in [0, 1]."""
    mode = img.mode
    trns = img.info.get("transparency")
    if mode in _GRAY16:
        g = np.asarray(img).astype(np.float64)
        x = np.clip(g / 65535.0, 0.0, 1.0).astype(np.float32)
        x = np.repeat(x[..., None], 3, axis=2)
        if isinstance(trns, int):
            x[g == trns] = 1.0
        return x
    if mode == "F":
        g = np.clip(np.nan_to_num(np.asarray(img, dtype=np.float32)), 0.0, 1.0)
        return np.repeat(g[..., None], 3, axis=2)
    if mode == "La":
        img, mode = img.convert("LA"), "LA"
    if mode in _ALPHA_MODES or (trns is not None and mode in ("P", "L", "RGB", "1")):
        if mode == "1":
            img = img.convert("L")
        return _composite_white(np.asarray(img.convert("RGBA")), 255.0)
    if mode != "RGB":
        img = img.convert("RGB")  # 1, L, P, CMYK, YCbCr, RGBX, HSV (raises if unsupported)
    return np.asarray(img, dtype=np.float32) / np.float32(255.0)


def image_size(path: PathLike) -> tuple[int, int]:
    """``(H, W)`` of the tensor :func:`load_image` returns for ``path``, from the file's
    header (no pixel decoding; EXIF orientations 5-8 swap the sides as
    :func:`PIL.ImageOps.exif_transpose` does). A file whose header cannot be read is
    decoded in full, so it fails with :func:`load_image`'s :class:`ImageReadError`."""
    try:
        with Image.open(path) as img:
            w, h = img.size
            if img.getexif().get(0x0112) in (5, 6, 7, 8):  # transposed: sides swap
                w, h = h, w
            return int(h), int(w)
    except Exception:
        h, w = load_image(path).shape[-2:]
        return int(h), int(w)


def load_image(path: PathLike) -> torch.Tensor:
    """Read an image file as a ``float32`` tensor ``[3, H, W]`` in ``[0, 1]`` (RGB).

    See the module docstring for how modes, transparency (composited over white), 16-bit
    data and EXIF orientation are handled. Raises :class:`ImageReadError` on any failure.
    """
    p = Path(path)
    try:
        if p.is_file() and p.stat().st_size == 0:
            raise _fail(path, "file is empty")
        with Image.open(p) as img:
            rgb16 = _load_rgb16(p, img)
            if rgb16 is not None:
                if rgb16.shape[-1] == 4:
                    arr = _composite_white(rgb16, 65535.0)
                else:
                    arr = (rgb16.astype(np.float64) / 65535.0).astype(np.float32)
                    trns = img.info.get("transparency")
                    if isinstance(trns, tuple) and len(trns) == 3:
                        arr[np.all(rgb16 == np.asarray(trns, dtype=np.uint16), axis=-1)] = 1.0
            else:
                img.load()  # force Pillow's lazy decoding so truncation fails here
                arr = _to_float_rgb(ImageOps.exif_transpose(img))
    except (MemoryError, ImageReadError):
        raise
    except FileNotFoundError as e:
        raise _fail(path, "file not found") from e
    except IsADirectoryError as e:
        raise _fail(path, "is a directory") from e
    except PermissionError as e:
        raise _fail(path, "permission denied") from e
    except UnidentifiedImageError as e:
        raise _fail(path, "not an image file (cannot identify image file)") from e
    except Image.DecompressionBombError as e:
        raise _fail(path, f"image too large ({e})") from e
    except Exception as e:
        raise _fail(
            path, f"corrupt, truncated or unsupported image ({type(e).__name__}: {e})"
        ) from e
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def is_transparent(path: PathLike) -> bool:
    """True when the image at ``path`` has a pixel that is not opaque (which
    :func:`load_image` composites over white); False for opaque or unreadable files."""
    try:
        with Image.open(path) as img:
            if img.mode not in _ALPHA_MODES and "transparency" not in img.info:
                return False
            # one band: (min, max) (Pillow types it for many bands too)
            lo, _ = cast(tuple[int, int], img.convert("RGBA").getchannel("A").getextrema())
            return lo < 255
    except Exception:  # unreadable: load_image says why
        return False


def to_uint8(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    """8-bit quantisation ``round(clamp(x, 0, 1) * 255)`` as a ``uint8`` tensor (same shape).

    Rounding is :func:`torch.round` (half to even; ties cannot occur for ``k / 255`` inputs).
    NaN maps to 0. A ``uint8`` input is already 8-bit and comes back unchanged; other integer
    types, floats far above 1 (a 0..255 image not divided by 255) and far below 0 (a [-1, 1]
    image: it came out half black) raise ``ValueError``.
    """
    x = torch.as_tensor(x)
    if x.dtype == torch.uint8:
        return x
    if not x.is_floating_point():
        raise ValueError(f"to_uint8: expected float images in [0, 1] or uint8, got {x.dtype}")
    x = torch.nan_to_num(x.detach(), nan=0.0)
    if x.numel() and float(x.max()) > 2.0:
        raise ValueError(
            f"to_uint8: values up to {float(x.max()):.4g}, expected images in [0, 1] "
            "(8-bit images: divide by 255)"
        )
    if x.numel() and float(x.min()) < -0.5:
        raise ValueError(
            f"to_uint8: values down to {float(x.min()):.4g}, expected images in [0, 1] "
            "([-1, 1] images: map them with (x + 1) / 2)"
        )
    return torch.round(x.clamp(0.0, 1.0) * 255.0).to(torch.uint8)


def save_image(x: torch.Tensor | np.ndarray, path: PathLike, **save_kw) -> Path:
    """Write ``x`` (``[3, H, W]``, ``[1, 3, H, W]``; 1-channel gray also accepted) to ``path``.

    Values are quantised with :func:`to_uint8`. The format follows the extension (PNG,
    JPEG, BMP, TIFF, WebP, ... whatever Pillow writes; JPEG defaults to ``quality=95``).
    Parent folders are created and the write is atomic (temporary file in the same folder,
    then :func:`os.replace`). Returns the path written.
    """
    p = Path(path)
    x = torch.as_tensor(x)
    if x.dim() == 4:
        if x.shape[0] != 1:
            raise ValueError(
                f"save_image expects a single image, got a batch of shape {tuple(x.shape)}"
            )
        x = x[0]
    if x.dim() != 3 or x.shape[0] not in (1, 3):
        raise ValueError(f"save_image expects [3,H,W] or [1,3,H,W], got shape {tuple(x.shape)}")
    ext = p.suffix.lower()
    fmt = Image.registered_extensions().get(ext)
    if fmt is None or fmt not in Image.SAVE:
        raise ValueError(
            f"cannot save image {os.fspath(p)!r}: unknown or unwritable extension {ext!r}"
        )
    arr = to_uint8(x).cpu().numpy()
    img = Image.fromarray(arr[0]) if arr.shape[0] == 1 else Image.fromarray(arr.transpose(1, 2, 0))
    if fmt == "JPEG":
        save_kw.setdefault("quality", 95)
    with atomic_path(p) as tmp, open(tmp, "xb") as f:
        img.save(f, format=fmt, **save_kw)
    return p
