"""``unilip ask IMAGE QUESTION``: one answer from the MLLM, with its own encoder or the UniLIP one."""

from __future__ import annotations

import argparse

from unilip.cli.args import add_mllm_args, load_mllm, model_input, path_arg, user_image


def cmd_ask(args: argparse.Namespace) -> int:
    import torch

    from unilip.checks import check_text
    from unilip.mllm.chat import check_plain_text

    question = check_text("question", " ".join(args.question))
    check_plain_text(question)
    picture = user_image(args.image)  # a bad image is refused before the model loads
    mllm = load_mllm(args)
    image = model_input(args.image, mllm.image_size, picture)[None]
    with torch.no_grad():
        print(mllm.answer([question], image)[0])
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    q = sub.add_parser("ask", help="ask the MLLM a question about an image",
                       description="Answer a question about an image with the MLLM (original or UniLIP encoder).")
    q.add_argument("image", type=path_arg, metavar="IMAGE")
    q.add_argument("question", nargs="+", metavar="QUESTION")
    add_mllm_args(q)
    q.set_defaults(func=cmd_ask)
