"""``unilip reproduce tokenizer | generator``: the paper's tables in miniature, trained and scored on the mini world."""

from __future__ import annotations

import argparse

from unilip.checks import MAX_BATCH, MAX_RECORDS
from unilip.cli.args import float_in, int_in, path_arg


def cmd_reproduce_tokenizer(args: argparse.Namespace) -> int:
    import time

    from unilip.reproduce.tokenizer import reproduce_tokenizer

    t0 = time.perf_counter()
    results = reproduce_tokenizer(args.out, mllm=args.mllm, quick=args.quick)
    print(f"done in {(time.perf_counter() - t0) / 60:.1f} min: {args.out / 'report.md'}, {args.out / 'report.html'}")
    for name, r in results["variants"].items():
        print(f"  {name:15s} PSNR {r['psnr']:6.2f}  SSIM {r['ssim']:.3f}  VQA {100 * r['vqa']:5.1f}%  drift {r['feature_drift']:.4f}")
    print(f"  original encoder VQA {100 * results['original_encoder']['vqa']:.1f}%")
    return 0


def cmd_reproduce_generator(args: argparse.Namespace) -> int:
    from unilip.reproduce.generator import reproduce_generator

    variants = [v.strip() for v in args.variants.split(",")] if args.variants else None
    results = reproduce_generator(args.out, mllm=args.mllm, tokenizer=args.tokenizer, quick=args.quick, variants=variants,
                                  steps=args.steps, batch_size=args.batch_size, pool=args.pool, edit=args.edit_share)
    print(f"wrote {args.out / 'results.json'}, {args.out / 'report.md'}, {args.out / 'report.html'} "
          f"({results['seconds'] / 60:.1f} min)")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("reproduce", help="reproduce the paper's results in miniature", description=(
        "Reproduce the paper's results on the mini world."))
    repro = p.add_subparsers(dest="reproduce_command", metavar="WHAT", required=True)
    q = repro.add_parser("tokenizer", help="the tokenizer's claims: reconstruction vs understanding, and ablations",
                         description=("Train the UniLIP tokenizer eight ways on the mini MLLM's encoder (stage 1 only, "
                                      "stage 1 for as many steps as the full recipe, the full recipe, distillation "
                                      "weights 0.1 and 0.01, no distillation, direct fine-tuning, no stage 1) and report "
                                      "reconstruction and VQA accuracy beside the paper's claims (about 35 min on 2 "
                                      "cores; --quick is a smoke run)."))
    q.add_argument("-o", "--out", type=path_arg, required=True, help="output directory (runs, results.json, report.md/.html)")
    q.add_argument("--quick", action="store_true", help="a few steps and small evaluations (a smoke test, not results)")
    q.add_argument("--mllm", default="mini", help="the MLLM whose encoder is revamped ('mini' = bundled)")
    q.set_defaults(func=cmd_reproduce_tokenizer)

    q = repro.add_parser("generator", help="the generator's ablations: dual vs queries vs hidden, UniLIP vs VAE latent",
                         description=("Train the mini generator four ways with the same budget (dual conditions, "
                                      "queries only, hidden states only, and dual in a plain DC-AE autoencoder's latent) "
                                      "and score each on mini GenEval / ImgEdit / WISE beside the paper's numbers "
                                      "(about 20 min per variant on 2 cores; --quick is a smoke run)."))
    q.add_argument("-o", "--out", type=path_arg, required=True, help="output directory (runs, results.json, report.md/.html)")
    q.add_argument("--quick", action="store_true", help="a few steps and small evaluations (a smoke test, not results)")
    q.add_argument("--mllm", default="mini", help="the frozen MLLM ('mini' = bundled)")
    q.add_argument("--tokenizer", default="mini", help="the frozen UniLIP tokenizer ('mini' = bundled)")
    q.add_argument("--variants", help="comma-separated subset (dual,queries,hidden,vae_latent); finished variants are "
                                      "reused, so two processes can split the work and a last call writes the report")
    q.add_argument("--steps", type=int_in(1, 10_000_000), help="training steps per variant (default 2000 of 64 images, ~17 min on 2 cores)")
    q.add_argument("--batch-size", type=int_in(1, MAX_BATCH), help="images per step (default 64)")
    q.add_argument("--pool", type=int_in(0, MAX_RECORDS), help="train on a frozen pool of N items (default 0: render every step)")
    q.add_argument("--edit-share", type=float_in(0, 1), help="share of edit triplets in the training mix (default 0.3)")
    q.set_defaults(func=cmd_reproduce_generator)
