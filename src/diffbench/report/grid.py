"""Image grids of a report (Pillow): each backend's output beside eager's, with its SSIM/PSNR under it."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

from diffbench.results.records import atomic_path

logger = logging.getLogger(__name__)

PADDING = 8
MIN_CELL_WIDTH = 224  # room for the caption "SSIM 0.9975 / PSNR 40.8 dB" under a small image
TITLE_HEIGHT = 30
ROW_LABEL_HEIGHT = 20  # a line above each row naming its run
LINE_HEIGHT = 18
CAPTION_LINES = 3
BACKGROUND = (255, 255, 255)
MISSING_FILL = (236, 236, 236)
TEXT_COLOR = (34, 34, 34)
Font = ImageFont.ImageFont | ImageFont.FreeTypeFont  # what load_default gives: bitmap or FreeType


@dataclass
class Cell:
    """One case in the grid: its image (None if there is none) and the caption lines under it."""

    image_path: Path | None
    caption: list[str] = field(default_factory=list)
    missing_reason: str = "no image recorded"  # shown when the image cannot be had


def _font(size: int) -> Font:
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1 with FreeType: a scalable font
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()  # older Pillow: the fixed bitmap font, still legible


def fit_image(image: Image.Image, size: int) -> Image.Image:
    """The image as the grid shows it: large ones shrunk (Lanczos) to fit size x size, small ones
    enlarged by a whole factor (nearest, so every pixel stays exact), RGB."""
    image = image.convert("RGB")
    scale = size / max(image.size)
    if scale < 1:
        shape = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        return image.resize(shape, Image.Resampling.LANCZOS)
    factor = int(scale)
    return (
        image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST) if factor > 1 else image
    )


def cell_width(size: int) -> int:
    return max(size, MIN_CELL_WIDTH) + 2 * PADDING


def cell_height(size: int) -> int:
    return ROW_LABEL_HEIGHT + size + 2 * PADDING + CAPTION_LINES * LINE_HEIGHT


def image_box(row: int, column: int, shown: tuple[int, int], size: int) -> tuple[int, int, int, int]:
    """Where an image of the shown (fitted) size lies in the grid: left, top, right, bottom."""
    left = column * cell_width(size) + (cell_width(size) - shown[0]) // 2
    top = TITLE_HEIGHT + row * cell_height(size) + ROW_LABEL_HEIGHT + PADDING + (size - shown[1]) // 2
    return left, top, left + shown[0], top + shown[1]


def _load(cell: Cell, size: int) -> tuple[Image.Image | None, str]:
    if cell.image_path is None:
        return None, cell.missing_reason
    try:
        with Image.open(cell.image_path) as image:
            return fit_image(image, size), ""
    except FileNotFoundError:
        return None, "file not found"
    except (OSError, UnidentifiedImageError) as error:
        logger.warning("image %s cannot be read: %s", cell.image_path, error)
        return None, "unreadable file"


def _fit_text(draw: ImageDraw.ImageDraw, text: str, font: Font, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "...", font=font) > width:
        text = text[:-1]
    return text + "..."


def _draw_missing(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], reason: str, font: Font) -> None:
    draw.rectangle(box, fill=MISSING_FILL)
    middle = (box[1] + box[3]) // 2
    width = box[2] - box[0] - 2 * PADDING
    for offset, text in ((-LINE_HEIGHT // 2, "image not available"), (LINE_HEIGHT // 2, reason)):
        draw.text(
            ((box[0] + box[2]) // 2, middle + offset),
            _fit_text(draw, text, font, width),
            fill=TEXT_COLOR,
            font=font,
            anchor="mm",
        )


def render_grid(title: str, rows: list[list[Cell]], row_labels: list[str], size: int) -> Image.Image:
    """The grid: one row per run (labelled above it), one column per backend (eager first), a caption
    under each image."""
    columns = max(len(row) for row in rows)
    grid = Image.new("RGB", (columns * cell_width(size), TITLE_HEIGHT + len(rows) * cell_height(size)), BACKGROUND)
    draw = ImageDraw.Draw(grid)
    title_font, font = _font(16), _font(13)
    draw.text(
        (PADDING, TITLE_HEIGHT // 2),
        _fit_text(draw, title, title_font, grid.width - 2 * PADDING),
        fill=TEXT_COLOR,
        font=title_font,
        anchor="lm",
    )
    for row_index, (row, row_label) in enumerate(zip(rows, row_labels)):
        row_top = TITLE_HEIGHT + row_index * cell_height(size)
        label = _fit_text(draw, row_label, font, grid.width - 2 * PADDING)
        draw.text((PADDING, row_top + ROW_LABEL_HEIGHT // 2 + 2), label, fill=TEXT_COLOR, font=font, anchor="lm")
        for column_index, cell in enumerate(row):
            image, reason = _load(cell, size)
            if image is None:
                _draw_missing(draw, image_box(row_index, column_index, (size, size), size), reason, font)
            else:
                grid.paste(image, image_box(row_index, column_index, image.size, size)[:2])
            left = column_index * cell_width(size) + PADDING
            top = row_top + ROW_LABEL_HEIGHT + PADDING + size + 3
            for line_index, line in enumerate(cell.caption[:CAPTION_LINES]):
                draw.text(
                    (left, top + line_index * LINE_HEIGHT),
                    _fit_text(draw, line, font, cell_width(size) - 2 * PADDING),
                    fill=TEXT_COLOR,
                    font=font,
                )
    return grid


def write_grid(path: Path, title: str, rows: list[list[Cell]], row_labels: list[str], size: int) -> None:
    with atomic_path(path) as temporary:
        render_grid(title, rows, row_labels, size).save(temporary, optimize=True)
