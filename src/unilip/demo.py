"""``unilip demo``: the embedded default end to end, in under a minute on a laptop CPU.

Renders fresh held-out mini-world scenes, reconstructs them with the UniLIP tokenizer, asks the MLLM questions about
each scene with its original encoder and with the UniLIP encoder swapped in, and writes one HTML page with the
images, the answers (right or wrong against the scene graph) and the metrics.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import time
from pathlib import Path

import numpy as np
import torch

logger = logging.getLogger("unilip.demo")


def _data_uri(array: np.ndarray, scale: int = 3) -> str:
    from PIL import Image

    img = Image.fromarray(array).resize((array.shape[1] * scale, array.shape[0] * scale), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def run_demo(out: str | Path = "unilip-demo", n: int = 8, seed: int = 0, model: str = "mini", tokenizer: str = "mini",
             log=print) -> Path:
    """Write ``out/index.html``; ``log`` receives progress lines. Returns the page's path."""
    from unilip.config import get_preset
    from unilip.data.miniworld.dataset import make_records
    from unilip.eval.grid import to_uint8
    from unilip.eval.metrics import psnr, ssim
    from unilip.hub import resolve_model
    from unilip.mllm.model import MLLM
    from unilip.tokenizer import UniLIPTokenizer

    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = get_preset("mini").miniworld
    log(f"[1/4] loading the MLLM ({model}) and the UniLIP tokenizer ({tokenizer})")
    tok = UniLIPTokenizer.from_pretrained(resolve_model(tokenizer, "tokenizer")).eval()
    original = MLLM.from_pretrained(resolve_model(model, "mllm")).eval()
    unilip = MLLM.from_pretrained(resolve_model(model, "mllm")).eval()
    unilip.use_encoder(tok.encoder)

    log(f"[2/4] rendering {n} held-out scenes (test split, from record {seed * n}) with two questions each")
    records = list(make_records("vqa", cfg, "test", seed * 2 * n, 2 * n))
    captions = list(make_records("captions", cfg, "test", seed * n, n))
    from unilip.data.miniworld.renderer import render

    scenes = [c["scene"] for c in captions]
    images = torch.from_numpy(np.stack([render(sc, cfg) for sc in scenes])).permute(0, 3, 1, 2).float() / 255
    q_images = torch.from_numpy(np.stack([render(r["scene"], cfg) for r in records])).permute(0, 3, 1, 2).float() / 255

    log("[3/4] reconstructing them with the UniLIP tokenizer")
    with torch.no_grad():
        recon = tok.reconstruct(images)
    p, s = psnr(recon, images), ssim(recon, images)

    log("[4/4] asking the MLLM with its original encoder and with the UniLIP encoder")
    questions = [r["question"] for r in records]
    answers = {"original": original.answer(questions, q_images), "unilip": unilip.answer(questions, q_images)}
    scores = {k: float(np.mean([a == r["answer"] for a, r in zip(v, records)])) for k, v in answers.items()}

    page = _page(captions, to_uint8(images), to_uint8(recon), p, s, records, to_uint8(q_images), answers, scores,
                 time.perf_counter() - t0)
    path = out / "index.html"
    path.write_text(page, encoding="utf-8")
    log(f"mean PSNR {float(p.mean()):.2f} dB, SSIM {float(s.mean()):.3f}; VQA original {100 * scores['original']:.0f}%, "
        f"UniLIP {100 * scores['unilip']:.0f}% on {len(records)} questions")
    log(f"wrote {path} in {time.perf_counter() - t0:.1f} s")
    return path


def _page(captions, originals, recons, p, s, records, q_images, answers, scores, seconds: float) -> str:
    e = html.escape
    recon_cells = "".join(
        f"<figure><img src='{_data_uri(o)}'><img src='{_data_uri(r)}'><figcaption>{e(c['caption'])}<br>"
        f"PSNR {float(pi):.1f} dB, SSIM {float(si):.3f}</figcaption></figure>"
        for c, o, r, pi, si in zip(captions, originals, recons, p, s))
    rows = []
    for i, r in enumerate(records):
        cells = []
        for key in ("original", "unilip"):
            a = answers[key][i]
            cells.append(f"<td class='{'ok' if a == r['answer'] else 'bad'}'>{e(a) or '(nothing)'}</td>")
        rows.append(f"<tr><td><img src='{_data_uri(q_images[i], 2)}'></td><td>{e(r['question'])}</td>"
                    f"<td>{e(r['answer'])}</td>{''.join(cells)}</tr>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:auto}figure{display:inline-block;width:400px;margin:6px}"
             "figcaption{font-size:13px}table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:4px 8px}"
             ".ok{background:#dfd}.bad{background:#fdd}img{image-rendering:pixelated;margin:2px}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>unilip demo</title><style>{style}</style></head><body>"
            "<h1>unilip demo: the mini world</h1>"
            "<p>One CLIP-like encoder, revamped by UniLIP: it reconstructs the scenes (left: original, right: "
            "reconstruction from the 32x4x4 UniLIP latent), and the MLLM still understands them with it.</p>"
            f"<h2>Reconstruction</h2>{recon_cells}"
            f"<h2>Understanding</h2><p>Accuracy: original encoder {100 * scores['original']:.0f}%, "
            f"UniLIP encoder {100 * scores['unilip']:.0f}% ({len(records)} questions).</p>"
            "<table><tr><th>image</th><th>question</th><th>truth</th><th>original encoder</th><th>UniLIP encoder</th></tr>"
            f"{''.join(rows)}</table><p>Made in {seconds:.1f} s.</p></body></html>\n")
