"""``unilip train tokenizer | mllm | generator`` (one stage, its config a YAML file plus ``key=value`` overrides) and
``unilip latent-scale`` (the factor a new tokenizer's generator needs)."""

from __future__ import annotations

import argparse

from unilip.checks import MAX_IMAGE_SIZE, MAX_RECORDS
from unilip.cli.args import add_runtime_args, int_in, load_tokenizer, path_arg


def cmd_train_tokenizer(args: argparse.Namespace) -> int:
    from unilip.train.tokenizer import load_train_config, train_tokenizer

    cfg = load_train_config(args.config, args.overrides)
    out = train_tokenizer(cfg, resume=args.resume)
    print(f"trained {cfg.stage.name}: checkpoints in {out}, final (EMA) tokenizer in {out / 'final'}")
    return 0


def cmd_train_mllm(args: argparse.Namespace) -> int:
    from unilip.train.mllm import load_mllm_config, train_mllm

    cfg = load_mllm_config(args.config, args.overrides)
    out = train_mllm(cfg, resume=args.resume)
    print(f"trained the MLLM's {cfg.stage.name} stage: checkpoints in {out}, final (EMA) model in {out / 'final'}")
    return 0


def cmd_train_generator(args: argparse.Namespace) -> int:
    from unilip.train.generator import load_generator_config, train_generator

    cfg = load_generator_config(args.config, args.overrides)
    out = train_generator(cfg, resume=args.resume)
    print(f"trained the generator's {cfg.stage.name} stage: checkpoints in {out}, final (EMA) generator in {out / 'final'}")
    return 0


def cmd_latent_scale(args: argparse.Namespace) -> int:
    from unilip.data.sources import first_images, open_source
    from unilip.generation.model import latent_scale_of_images

    tok = load_tokenizer(args.tokenizer, args)
    images = first_images(open_source(args.data), args.n)
    scale = latent_scale_of_images(tok, images, args.image_size or tok.image_size)
    print(f"latent scale {scale:.4f} (1 / std of the latents of {len(images)} images from {args.data}); "
          f"set model.generator.latent_scale to it in the generator config")
    return 0


def _add_stage_args(q: argparse.ArgumentParser, example: str) -> None:
    q.add_argument("--config", type=path_arg, help=f"stage config YAML, e.g. {example}")
    q.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in loop.output_dir")
    q.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. loop.max_steps=100 optim.lr=3e-4")


def add_train_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model (the stage is in the config)", description="Train a model.")
    train_sub = p.add_subparsers(dest="train_command", metavar="MODEL", required=True)
    q = train_sub.add_parser("tokenizer", help="train one UniLIP tokenizer stage", description=(
        "Train one stage of the UniLIP tokenizer (configs/tokenizer/*.yaml). Multi-process: "
        "torchrun --nproc_per_node N -m unilip.cli train tokenizer ... (or accelerate launch)."))
    _add_stage_args(q, "configs/tokenizer/mini_stage1.yaml")
    q.set_defaults(func=cmd_train_tokenizer)

    q = train_sub.add_parser("mllm", help="train one stage of the mini MLLM", description=(
        "Train the mini MLLM: the vision stage (dense patch attributes) then the instruct stage (questions, captions, "
        "world knowledge). configs/mllm/*.yaml."))
    _add_stage_args(q, "configs/mllm/mini_vision.yaml")
    q.set_defaults(func=cmd_train_mllm)

    q = train_sub.add_parser("generator", help="train one stage of the generator (queries, connector, DiT)", description=(
        "Train one generator stage (configs/generator/*.yaml): the frozen MLLM and UniLIP tokenizer condition and "
        "encode; the queries, the connector and the SANA DiT learn flow matching in the UniLIP latent."))
    _add_stage_args(q, "configs/generator/mini.yaml")
    q.set_defaults(func=cmd_train_generator)


def add_latent_scale_parser(sub: argparse._SubParsersAction) -> None:
    q = sub.add_parser("latent-scale", help="measure the factor that gives the DiT unit-variance latents",
                       description="1 / std of a tokenizer's latents over a dataset: the generator's latent_scale "
                                   "(the official 10.6 for UniLIP-1B, 9.5 for 2B were measured so).")
    q.add_argument("--tokenizer", default="mini", help="UniLIP tokenizer directory ('mini' = bundled)")
    q.add_argument("--data", default="miniworld:train", help="image source (miniworld:SPLIT, a folder, a dataset dir, ...)")
    q.add_argument("--n", type=int_in(1, MAX_RECORDS), default=2000, help="images to measure over")
    q.add_argument("--image-size", type=int_in(8, MAX_IMAGE_SIZE), help="resize images to this side (default: the tokenizer's)")
    add_runtime_args(q)
    q.set_defaults(func=cmd_latent_scale)
