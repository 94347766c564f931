"""``unilip demo``: the embedded default end to end, in under a minute on a laptop CPU.

Renders fresh held-out mini-world scenes, reconstructs them with the UniLIP tokenizer, asks the MLLM questions about
each scene with its original encoder and with the UniLIP encoder swapped in, generates images from prompts and edits
scenes by instructions with the generator, and writes one HTML page with the images, the answers (right or wrong
against the scene graph), the detector's verdicts on the generated and edited images, and the metrics.
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
             generator: str | None = "mini", log=print) -> Path:
    """Write ``out/index.html``; ``log`` receives progress lines. Returns the page's path."""
    from unilip.config import get_preset
    from unilip.data.miniworld.dataset import make_records
    from unilip.eval.grid import to_uint8
    from unilip.eval.metrics import psnr, ssim
    from unilip.pretrained import resolve_model
    from unilip.mllm.model import MLLM
    from unilip.tokenizer import UniLIPTokenizer

    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = get_preset("mini").miniworld
    log(f"[1/6] loading the MLLM ({model}), the UniLIP tokenizer ({tokenizer}) and the generator ({generator})")
    tok = UniLIPTokenizer.from_pretrained(resolve_model(tokenizer, "tokenizer")).eval()
    original = MLLM.from_pretrained(resolve_model(model, "mllm")).eval()
    unilip = MLLM.from_pretrained(resolve_model(model, "mllm")).eval()
    unilip.use_encoder(tok.encoder)
    pipe = None
    if generator is not None:
        from unilip.generation.flow import load_scheduler
        from unilip.generation.model import UniLIPGenerator
        from unilip.pipeline import UniLIPPipeline

        generator_dir = resolve_model(generator, "generator")
        pipe = UniLIPPipeline(UniLIPGenerator.from_pretrained(generator_dir, original, tok), progress=False,
                              scheduler=load_scheduler(generator_dir))

    log(f"[2/6] rendering {n} held-out scenes (test split, from record {seed * n}) with two questions each")
    records = list(make_records("vqa", cfg, "test", seed * 2 * n, 2 * n))
    captions = list(make_records("captions", cfg, "test", seed * n, n))
    from unilip.data.miniworld.renderer import render

    scenes = [c["scene"] for c in captions]
    images = torch.from_numpy(np.stack([render(sc, cfg) for sc in scenes])).permute(0, 3, 1, 2).float() / 255
    q_images = torch.from_numpy(np.stack([render(r["scene"], cfg) for r in records])).permute(0, 3, 1, 2).float() / 255

    log("[3/6] reconstructing them with the UniLIP tokenizer")
    with torch.no_grad():
        recon = tok.reconstruct(images)
    p, s = psnr(recon, images), ssim(recon, images)

    log("[4/6] asking the MLLM with its original encoder and with the UniLIP encoder")
    questions = [r["question"] for r in records]
    answers = {"original": original.answer(questions, q_images), "unilip": unilip.answer(questions, q_images)}
    scores = {k: float(np.mean([a == r["answer"] for a, r in zip(v, records)])) for k, v in answers.items()}

    generated = _generate_and_edit(pipe, cfg, n, seed, log) if pipe is not None else ""
    page = _page(captions, to_uint8(images), to_uint8(recon), p, s, records, to_uint8(q_images), answers, scores,
                 generated, time.perf_counter() - t0)
    path = out / "index.html"
    path.write_text(page, encoding="utf-8")
    log(f"mean PSNR {float(p.mean()):.2f} dB, SSIM {float(s.mean()):.3f}; VQA original {100 * scores['original']:.0f}%, "
        f"UniLIP {100 * scores['unilip']:.0f}% on {len(records)} questions")
    log(f"wrote {path} in {time.perf_counter() - t0:.1f} s")
    return path


def _generate_and_edit(pipe, cfg, n: int, seed: int, log) -> str:
    """Generate from mini GenEval prompts and edit test scenes; the HTML section with the detector's verdicts."""
    from unilip.data.miniworld import detect, render
    from unilip.eval.gen_common import generate_for
    from unilip.eval.geneval_mini import geneval_prompts, satisfies
    from unilip.eval.imgedit_mini import edit_records, score_edit

    e = html.escape
    specs = geneval_prompts(cfg)
    specs = [specs[int(i)] for i in np.random.default_rng(seed).choice(len(specs), n, replace=False)]
    log(f"[5/6] generating {n} images from prompts")
    images = generate_for(pipe, [s["prompt"] for s in specs], 1, seed)
    ok = [satisfies(detect(im, cfg), sp) for im, sp in zip(images, specs)]
    records = edit_records(cfg, n, 0)[:n]
    log(f"[6/6] editing {n} scenes by instructions")
    sources = np.stack([render(r["scene"], cfg) for r in records])
    edited = generate_for(pipe, [r["instruction"] for r in records], 1, seed,
                          sources=torch.from_numpy(sources).permute(0, 3, 1, 2).float() / 255)
    scores = [score_edit(im, r, cfg) for im, r in zip(edited, records)]
    log(f"generation: {sum(ok)}/{n} right by the detector; editing: {sum(x['ok'] for x in scores)}/{n}")
    mark = lambda good: "<b class='ok'>&#10003;</b>" if good else "<b class='bad'>&#10007;</b>"
    gen_cells = "".join(f"<figure><img src='{_data_uri(im)}'><figcaption>{mark(k)} {e(sp['prompt'])} "
                        f"<i>({e(sp['category'])})</i></figcaption></figure>" for im, sp, k in zip(images, specs, ok))
    edit_cells = "".join(f"<figure><img src='{_data_uri(src)}'><img src='{_data_uri(im)}'><figcaption>{mark(sc['ok'])} "
                         f"{e(r['instruction'])} <i>({e(r['edit_type'])}; PSNR outside the edit {sc['psnr_outside']:.1f} dB)"
                         "</i></figcaption></figure>" for src, im, r, sc in zip(sources, edited, records, scores))
    return (f"<h2>Generation</h2><p>{sum(ok)} of {n} right by the mini-world detector (mini GenEval rules).</p>{gen_cells}"
            f"<h2>Editing</h2><p>Left: source, right: edited. {sum(x['ok'] for x in scores)} of {n} follow the instruction "
            f"and keep everything else (by the detector).</p>{edit_cells}")


def _page(captions, originals, recons, p, s, records, q_images, answers, scores, generated: str, seconds: float) -> str:
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
            f"{''.join(rows)}</table>{generated}<p>Made in {seconds:.1f} s.</p></body></html>\n")
