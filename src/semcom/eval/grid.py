"""Labelled comparison grids: original + one tile per scheme and SNR, metrics underneath."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor


@dataclass
class Tile:
    """One grid cell: an image [3, H, W] in [0, 1] and its caption lines."""

    image: Tensor
    caption: Sequence[str] = ()


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType sizing
        return ImageFont.load_default()


def _to_pil(img: Tensor, width: int) -> Image.Image:
    arr = (img.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0)
    pil = Image.fromarray(arr.cpu().numpy())
    if pil.width != width:
        height = max(1, round(pil.height * width / pil.width))
        resample = Image.Resampling.LANCZOS if width < pil.width else Image.Resampling.NEAREST
        pil = pil.resize((width, height), resample)
    return pil


def make_grid(
    rows: Sequence[tuple[str, Sequence[Tile | None]]],
    col_headers: Sequence[str],
    tile_width: int = 256,
    title: str = "",
) -> Image.Image:
    """Compose a grid: one row per label (a column at least 110 px wide, wider for a longer
    label), one column per header; ``None`` leaves a gap.

    Args:
        rows: ``(row_label, tiles)`` with ``len(tiles) == len(col_headers)``.
        col_headers: column titles (e.g. ``"original"``, ``"SNR 0 dB"``).
        tile_width: width of each tile in pixels (images are scaled to it).
        title: optional line at the top (channel, CBR, ...).
    """
    font = _font(14)
    small = _font(12)
    pad, header_h, line_h = 6, 22, 15
    # the label column fits the widest label (a long one was covered by the first tile)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    # Pillow types text boxes as floats (whole pixels here: left-aligned at (0, 0))
    boxes = (measure.multiline_textbbox((0, 0), r[0], font=font) for r in rows)
    widest = math.ceil(max((box[2] for box in boxes), default=0))
    label_w = max(110, widest + 2 * pad)
    n_cols = len(col_headers)
    heights = []
    n_lines = 0
    for _, tiles in rows:
        if len(tiles) != n_cols:
            raise ValueError(f"row has {len(tiles)} tiles for {n_cols} columns")
        hs = [_to_pil(t.image, tile_width).height for t in tiles if t is not None]
        heights.append(max(hs) if hs else tile_width)
        n_lines = max([n_lines] + [len(t.caption) for t in tiles if t is not None])
    cap_h = n_lines * line_h + 4
    title_h = header_h if title else 0
    width = label_w + n_cols * (tile_width + pad) + pad
    height = title_h + header_h + sum(h + cap_h + pad for h in heights) + pad
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((pad, 4), title, fill="black", font=font)
    for c, head in enumerate(col_headers):
        draw.text((label_w + c * (tile_width + pad) + pad, title_h + 4), head, "black", font)
    y = title_h + header_h
    for (label, tiles), h in zip(rows, heights, strict=True):
        draw.text((pad, y + h // 2 - 7), label, fill="black", font=font)
        for c, tile in enumerate(tiles):
            if tile is None:
                continue
            x = label_w + c * (tile_width + pad) + pad
            canvas.paste(_to_pil(tile.image, tile_width), (x, y))
            for k, line in enumerate(tile.caption):
                draw.text((x, y + h + 2 + k * line_h), line, fill="black", font=small)
        y += h + cap_h + pad
    return canvas
