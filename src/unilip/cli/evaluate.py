"""``unilip eval recon | understanding | geneval-mini | imgedit-mini | wise-mini``: a model scored, the results
written as JSON (with a per-item CSV, JSONL or HTML beside it)."""

from __future__ import annotations

import argparse
import json

from unilip.checks import MAX_BATCH, MAX_GUIDANCE, MAX_IMAGE_SIZE, MAX_IMAGES_PER_PROMPT, MAX_RECORDS, MAX_SEED, MAX_STEPS
from unilip.cli.args import (add_mllm_args, add_runtime_args, float_in, int_in, load_mllm, load_pipeline, load_tokenizer,
                             path_arg)


def cmd_eval_recon(args: argparse.Namespace) -> int:
    from unilip.data.sources import open_source
    from unilip.eval.recon import evaluate_reconstruction, images_to_evaluate, write_results

    source = open_source(args.data)  # a missing folder or an endless source is refused before any model loads
    images_to_evaluate(source, args.n)
    model = load_tokenizer(args.model, args)
    reference = load_tokenizer(args.reference, args).encoder if args.reference else None
    lpips = rfid = None
    if args.lpips_weights:
        from unilip.eval.metrics import lpips_metric

        lpips = lpips_metric(args.lpips_weights)
    if args.fid_weights:
        from unilip.eval.metrics import rfid_metric

        rfid = rfid_metric(args.fid_weights)
    size = args.size or model.image_size
    rows, summary = evaluate_reconstruction(model, source, size, n=args.n, batch_size=args.batch_size,
                                            reference=reference, pad_to_multiple=args.pad, lpips=lpips, rfid=rfid)
    summary.update({"model": str(args.model), "data": args.data, "reference": args.reference or "the model's own encoder"})
    out, table = write_results(rows, summary, args.out)
    shown = {k: round(v, 4) for k, v in summary.items() if isinstance(v, float)}
    print(f"{summary['n_images']} images: {shown}\nwrote {out} and {table}")
    return 0


def cmd_eval_understanding(args: argparse.Namespace) -> int:
    from unilip.config import get_preset
    from unilip.eval.understanding import evaluate_understanding, write_understanding_results

    mllm = load_mllm(args)
    cfg = get_preset("mini").miniworld
    datasets = [args.data] if args.data else ["miniworld:test", "miniworld:heldout"]
    results = {"model": str(args.model), "encoder": args.encoder,
               "tokenizer": str(args.tokenizer) if args.encoder == "unilip" else None}
    answers = {}
    for data in datasets:
        r = evaluate_understanding(mllm, data, args.n, cfg, knowledge=data == datasets[0])
        answers[data] = r.pop("rows")
        results[data] = r
        per_type = ", ".join(f"{t} {100 * a:.1f}% (chance {100 * r['chance'][t]:.0f}%)" for t, a in r["per_type"].items())
        print(f"{data}: {100 * r['overall']:.1f}% of {r['n']} ({per_type})")
        if "knowledge" in r:
            print(f"world knowledge (held-out phrasings): {100 * r['knowledge']['accuracy']:.1f}% of {r['knowledge']['n']}")
    if args.out:
        print(f"wrote {write_understanding_results(results, answers, args.out)}")
    return 0


def cmd_eval_generation(args: argparse.Namespace) -> int:
    import dataclasses

    from unilip.config import get_preset

    pipe = load_pipeline(args.model, args)
    pipe.set_progress_bar_config(disable=True)
    world = dataclasses.replace(get_preset("mini").miniworld, image_size=pipe.image_size)  # scenes at the model's size
    common = {"out_dir": args.out, "steps": args.steps, "guidance": args.guidance, "seed": args.seed}
    if args.eval_command == "geneval-mini":
        from unilip.eval.geneval_mini import evaluate_geneval as evaluate
    elif args.eval_command == "imgedit-mini":
        from unilip.eval.imgedit_mini import evaluate_imgedit as evaluate
    else:
        from unilip.eval.wise_mini import evaluate_wise as evaluate
    summary = evaluate(pipe, world, samples=args.samples, **common)
    print(json.dumps(summary, indent=2))
    print(f"wrote {args.out / (args.eval_command + '.json')} and .html")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a model", description="Evaluate a model.")
    eval_sub = p.add_subparsers(dest="eval_command", metavar="WHAT", required=True)
    q = eval_sub.add_parser("recon", help="reconstruction metrics of a tokenizer", description=(
        "PSNR, SSIM (and the official data_range=2 SSIM, labelled), a Fréchet distance in a reference encoder's feature "
        "space, and LPIPS / rFID when their weights are on disk. Writes a summary JSON and a per-image CSV beside it."))
    q.add_argument("--model", required=True, help="tokenizer directory or Hugging Face repo id")
    q.add_argument("--data", required=True, help="miniworld:SPLIT, a dataset directory, an image folder, a .jsonl or shards")
    q.add_argument("-o", "--out", type=path_arg, required=True, help="summary JSON path (the CSV goes beside it)")
    q.add_argument("--n", type=int_in(1, MAX_RECORDS), help="number of images (default: all; required for miniworld: and shards)")
    q.add_argument("--size", type=int_in(8, MAX_IMAGE_SIZE), help="evaluation size (default: the model's image size)")
    q.add_argument("--batch-size", type=int_in(1, MAX_BATCH), default=32, help="images per forward pass (default 32)")
    q.add_argument("--reference", help="tokenizer dir whose encoder is the feature space for the Fréchet distance "
                   "(the original encoder; default: the evaluated model's own)")
    q.add_argument("--pad", action="store_true", help="official 256 px mode (reflect-pad to a multiple of the token stride)")
    q.add_argument("--lpips-weights", help="directory with LPIPS weights (needs the lpips extra)")
    q.add_argument("--fid-weights", help="Inception weights file for rFID (needs the fid extra)")
    add_runtime_args(q)
    q.set_defaults(func=cmd_eval_recon)

    q = eval_sub.add_parser("understanding", help="VQA accuracy of the MLLM, per question type", description=(
        "Exact-match accuracy of the MLLM's answers per question type and overall, with chance levels, on held-out "
        "scenes (default: miniworld:test and the held-out colour-shape pairs, miniworld:heldout) and on held-out "
        "phrasings of its world knowledge."))
    add_mllm_args(q)
    q.add_argument("--data", help="miniworld:SPLIT or a dataset written by `unilip miniworld make --task vqa`")
    q.add_argument("--n", type=int_in(1, MAX_RECORDS), default=1000, help="questions per split (default 1000)")
    q.add_argument("-o", "--out", type=path_arg, help="results JSON (answers go beside it as JSONL)")
    q.set_defaults(func=cmd_eval_understanding)

    for name, what, default_samples in (
            ("geneval-mini", "GenEval's six categories on the mini world (312 prompts), scored by the detector", 4),
            ("imgedit-mini", ("250 edits (recolour, remove, add, replace, move; 50 on held-out pairs): instruction "
                              "followed and everything else preserved, by the detector, and the PSNR outside the edit"), 1),
            ("wise-mini", "108 prompts naming colour and/or shape through world knowledge only, scored by the detector", 4)):
        q = eval_sub.add_parser(name, help=what.split(",")[0].split(":")[0], description=what + ". Writes JSON + HTML.")
        q.add_argument("--model", default="mini", help="pipeline directory, repo id, or 'mini' (bundled)")
        q.add_argument("--samples", type=int_in(1, MAX_IMAGES_PER_PROMPT), default=default_samples, help=f"samples per prompt (default {default_samples})")
        q.add_argument("--steps", type=int_in(1, MAX_STEPS), help="sampling steps (default: the generator config's)")
        q.add_argument("--guidance", type=float_in(1, MAX_GUIDANCE), help="guidance scale (default: the generator config's)")
        q.add_argument("--seed", type=int_in(0, MAX_SEED), default=0, help="base seed (sample j of prompt i has its own fixed seed)")
        q.add_argument("-o", "--out", type=path_arg, required=True, help="output directory for the JSON, HTML and samples")
        add_runtime_args(q, quantize=True)
        q.set_defaults(func=cmd_eval_generation)
