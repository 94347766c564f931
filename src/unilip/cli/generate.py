"""``unilip generate PROMPT`` and ``unilip edit IMAGE INSTRUCTION``: the pipeline, called once, its images written
as numbered PNGs."""

from __future__ import annotations

import argparse

from unilip.checks import MAX_GUIDANCE, MAX_IMAGES_PER_PROMPT, MAX_SEED, MAX_STEPS, SCHEDULERS
from unilip.cli.args import add_runtime_args, float_in, int_in, load_pipeline, path_arg, user_image


def _run_pipeline(args: argparse.Namespace, prompts: list[str], image=None) -> int:
    import torch

    pipe = load_pipeline(args.model, args)
    gens = [torch.Generator().manual_seed(args.seed + i) for i in range(len(prompts) * args.n)]
    images = pipe(prompts, image=image, num_images_per_prompt=args.n, num_inference_steps=args.steps,
                  guidance_scale=args.guidance, negative_prompt=args.negative_prompt, generator=gens,
                  scheduler=args.scheduler).images
    args.out.mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(images):
        path = args.out / f"{i:04d}.png"
        im.save(path)
        print(f"{prompts[i // args.n]!r} seed {args.seed + i} -> {path}")
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    return _run_pipeline(args, [" ".join(args.prompt).strip()])


def cmd_edit(args: argparse.Namespace) -> int:
    return _run_pipeline(args, [" ".join(args.instruction).strip()], image=user_image(args.image))


def _add_sampling_args(q: argparse.ArgumentParser) -> None:
    q.add_argument("--model", default="mini", help="pipeline directory (mllm/, tokenizer/, generator/), repo id, or 'mini'")
    q.add_argument("-n", type=int_in(1, MAX_IMAGES_PER_PROMPT), default=1, help="images per prompt")
    q.add_argument("--steps", type=int_in(1, MAX_STEPS), help="sampling steps (default: the generator config's; mini: 12)")
    q.add_argument("--guidance", type=float_in(1, MAX_GUIDANCE), help="classifier-free guidance scale (default: the generator config's)")
    q.add_argument("--negative-prompt", help="the unconditional branch's prompt (default: the empty prompt)")
    q.add_argument("--seed", type=int_in(0, MAX_SEED), default=0, help="image i uses seed + i: same seed, same images")
    q.add_argument("--scheduler", choices=SCHEDULERS, help="flow Euler, DPM-Solver++ or UniPC, no shift (default: the "
                   "model's own: for converted official checkpoints SANA's DPM-Solver, flow_shift 3; else Euler)")
    q.add_argument("-o", "--out", type=path_arg, required=True, help="output directory (0000.png, 0001.png, ...)")
    add_runtime_args(q, quantize=True)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    q = sub.add_parser("generate", help="generate images from a prompt", description=(
        "Text-to-image with the UniLIP generator (the bundled mini one by default: mini-world prompts such as "
        "'a red circle to the left of a blue square')."))
    q.add_argument("prompt", nargs="+", metavar="PROMPT")
    _add_sampling_args(q)
    q.set_defaults(func=cmd_generate)

    q = sub.add_parser("edit", help="edit an image by an instruction", description=(
        "Instruction-based editing: the MLLM reads the instruction and the image's UniLIP features, the DiT draws "
        "the edited image (mini: 'make the red circle blue', 'remove the square', 'add a small green triangle on the left')."))
    q.add_argument("image", type=path_arg, metavar="IMAGE")
    q.add_argument("instruction", nargs="+", metavar="INSTRUCTION")
    _add_sampling_args(q)
    q.set_defaults(func=cmd_edit)
