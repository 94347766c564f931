"""``unilip reconstruct IMAGE...``: each image through the UniLIP latent and back, at its own size, with its PSNR."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from unilip.checks import MAX_IMAGE_SIZE
from unilip.cli.args import add_runtime_args, int_in, load_tokenizer, path_arg, user_image
from unilip.errors import UniLIPError


def cmd_reconstruct(args: argparse.Namespace) -> int:
    from PIL import Image

    from unilip.data.loader import pil_to_tensor
    from unilip.eval.grid import to_uint8
    from unilip.eval.metrics import psnr

    model = load_tokenizer(args.model, args)
    size = args.size or model.image_size
    failed = 0
    for path in args.images:
        try:
            image = pil_to_tensor(user_image(path))[None]  # (1, 3, H, W): the whole image, decoded once
        except UniLIPError as err:
            print(f"unilip: error: {err}", file=sys.stderr)
            failed += 1
            continue
        recon = model.reconstruct(image, pad_to_multiple=args.pad, size=size)  # (1, 3, H, W), through size x size
        args.out.mkdir(parents=True, exist_ok=True)  # only once there is something to write
        target = args.out / f"{path.stem[:200]}_recon.png"
        Image.fromarray(to_uint8(recon)[0]).save(target)
        print(f"{path} -> {target}  ({image.shape[-1]}x{image.shape[-2]} through {size}x{size})  "
              f"PSNR {float(psnr(recon, image)[0]):.2f} dB")
    return 1 if failed else 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    q = sub.add_parser("reconstruct", help="reconstruct images with a UniLIP tokenizer",
                       description="Encode each image to the UniLIP latent and decode it back; writes <name>_recon.png.")
    q.add_argument("images", nargs="+", type=path_arg, metavar="IMAGE")
    q.add_argument("--model", required=True, help="tokenizer directory (save_pretrained) or Hugging Face repo id")
    q.add_argument("-o", "--out", type=path_arg, default=Path("reconstructions"), help="output directory")
    q.add_argument("--size", type=int_in(8, MAX_IMAGE_SIZE), help="the resolution the model works at: the image is resized to SIZE x SIZE, reconstructed, and resized back to its own size (default: the model's image size)")
    q.add_argument("--pad", action="store_true", help="official 256 px mode: reflect-pad to a multiple of the token stride")
    add_runtime_args(q)
    q.set_defaults(func=cmd_reconstruct)
