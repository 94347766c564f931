"""A sample sheet of the mini world: scenes with their captions, questions and edits, as one PNG + a text file.

This is what ``unilip demo`` shows first: what the models of unilip learn from, at the size they see it.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from unilip.data.miniworld.config import MiniWorldConfig
from unilip.data.miniworld.dataset import make_records
from unilip.data.miniworld.renderer import render_pil

_TILE = 128  # the 64 px scenes are shown at 2x, nearest-neighbour, so every pixel the models see is visible
_PAD = 8
_TEXT_LINES = 5
_LINE = 13


def _font() -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=11)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _tile(img: Image.Image) -> Image.Image:
    return img.resize((_TILE, _TILE), Image.NEAREST)


def _draw_text(draw: ImageDraw.ImageDraw, xy: tuple[int, int], text: str, font, width_chars: int) -> None:
    lines = textwrap.wrap(text, width_chars)[:_TEXT_LINES]
    for i, line in enumerate(lines):
        draw.text((xy[0], xy[1] + i * _LINE), line, fill=(20, 20, 20), font=font)


def sample_sheet(cfg: MiniWorldConfig, columns: int = 5, split: str = "train", start: int = 0) -> tuple[Image.Image, str]:
    """(sheet image, markdown text): a row of captioned scenes, a row of questions, a row of edits (source|target)."""
    font = _font()
    captions = list(make_records("captions", cfg, split, start, columns))
    vqa = list(make_records("vqa", cfg, split, start, columns))
    edits = list(make_records("edit", cfg, split, start, columns))
    cell_w, cell_h = 2 * _TILE + 3 * _PAD, _TILE + 2 * _PAD + _TEXT_LINES * _LINE
    sheet = Image.new("RGB", (columns * cell_w, 3 * cell_h), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    chars = (cell_w - 2 * _PAD) // 6
    text = ["# Mini-world sample sheet", "", f"Split `{split}`, records {start}..{start + columns - 1}, {cfg.image_size} px.", ""]
    text += ["## Captions", ""]
    for i, rec in enumerate(captions):
        sheet.paste(_tile(render_pil(rec["scene"], cfg)), (i * cell_w + _PAD + _TILE // 2, _PAD))
        _draw_text(draw, (i * cell_w + _PAD, _TILE + 2 * _PAD), rec["caption"], font, chars)
        text.append(f"- {rec['id']}: {rec['caption']}")
    text += ["", "## Questions", ""]
    for i, rec in enumerate(vqa):
        sheet.paste(_tile(render_pil(rec["scene"], cfg)), (i * cell_w + _PAD + _TILE // 2, cell_h + _PAD))
        qa = f"Q: {rec['question']} A: {rec['answer']} ({rec['qtype']})"
        _draw_text(draw, (i * cell_w + _PAD, cell_h + _TILE + 2 * _PAD), qa, font, chars)
        text.append(f"- {rec['id']}: {qa}")
    text += ["", "## Edits (source | target)", ""]
    for i, rec in enumerate(edits):
        x, y = i * cell_w + _PAD, 2 * cell_h + _PAD
        sheet.paste(_tile(render_pil(rec["scene"], cfg)), (x, y))
        sheet.paste(_tile(render_pil(rec["target"], cfg)), (x + _TILE + _PAD, y))
        _draw_text(draw, (x, y + _TILE + _PAD), f"{rec['edit_type']}: {rec['instruction']}", font, chars)
        text.append(f"- {rec['id']}: {rec['edit_type']}: {rec['instruction']}")
    return sheet, "\n".join(text) + "\n"


def write_sample_sheet(out_dir: str | Path, cfg: MiniWorldConfig | None = None, columns: int = 5) -> tuple[Path, Path]:
    """Write ``miniworld_sheet.png`` and ``miniworld_sheet.md`` into ``out_dir``; return both paths."""
    cfg = cfg or MiniWorldConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    image, text = sample_sheet(cfg, columns)
    png, md = out / "miniworld_sheet.png", out / "miniworld_sheet.md"
    image.save(png)
    md.write_text(text.replace("# Mini-world sample sheet\n", "# Mini-world sample sheet\n\n![sheet](miniworld_sheet.png)\n", 1), encoding="utf-8")
    return png, md
