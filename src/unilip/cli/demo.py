"""``unilip demo`` (the embedded default end to end, written as an HTML page) and ``unilip serve`` (the web page)."""

from __future__ import annotations

import argparse
from pathlib import Path

from unilip.checks import MAX_IMAGES_PER_PROMPT
from unilip.cli.args import add_runtime_args, int_in, path_arg
from unilip.data.miniworld.scene import SPLIT_SIZE


def cmd_demo(args: argparse.Namespace) -> int:
    from unilip.demo import run_demo

    run_demo(args.out, n=args.n, seed=args.seed, model=args.model, tokenizer=args.tokenizer,
             generator=None if args.no_generator else args.generator)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from unilip.serve import serve

    serve(args.model, host=args.host, port=args.port, expose=args.expose, device=args.device, dtype=args.dtype,
          concurrency=args.concurrency, queue_size=args.queue_size)
    return 0


def add_demo_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the embedded default end to end: reconstruct, understand, generate, edit",
                       description=("Render fresh held-out mini-world scenes, reconstruct them with the UniLIP "
                                    "tokenizer, ask the MLLM about them with its original and with the UniLIP "
                                    "encoder, generate images from prompts and edit scenes by instructions (scored by "
                                    "the detector), and write an HTML page (under a minute on a laptop CPU)."))
    p.add_argument("-o", "--out", type=path_arg, default=Path("unilip-demo"), help="output directory (default: unilip-demo)")
    p.add_argument("--n", type=int_in(1, MAX_IMAGES_PER_PROMPT), default=8, help="scenes to show (default 8)")
    p.add_argument("--seed", type=int_in(0, SPLIT_SIZE - 1000), default=0, help="which held-out scenes (default 0)")
    p.add_argument("--model", default="mini", help="MLLM ('mini' = bundled)")
    p.add_argument("--tokenizer", default="mini", help="UniLIP tokenizer ('mini' = bundled)")
    p.add_argument("--generator", default="mini", help="generator directory made with the MLLM and tokenizer ('mini' = bundled)")
    p.add_argument("--no-generator", action="store_true", help="reconstruct and understand only")
    p.set_defaults(func=cmd_demo)


def add_serve_parser(sub: argparse._SubParsersAction) -> None:
    q = sub.add_parser("serve", help="web demo: reconstruct, ask, generate and edit in a browser", description=(
        "Serve a web page (Gradio; pip install \"unilip[demo]\") with four tabs: reconstruct an image, ask the MLLM "
        "about it (original or UniLIP encoder), generate images from a prompt, edit an image by an instruction. The "
        "models load once, at start. Binds to 127.0.0.1; other addresses need --expose (there is no login)."))
    q.add_argument("--model", default="mini", help="pipeline directory (mllm/, tokenizer/, generator/), repo id, or 'mini'")
    q.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    q.add_argument("--port", type=int_in(1, 65535), default=7860, help="port (default 7860)")
    q.add_argument("--expose", action="store_true", help="allow a --host reachable from other machines (e.g. 0.0.0.0)")
    add_runtime_args(q)
    q.add_argument("--concurrency", type=int_in(1, 64), default=1, help="requests that run at once, all tabs together (default 1)")
    q.add_argument("--queue-size", type=int_in(1, 1024), default=16, help="requests that may wait; more are turned away (default 16)")
    q.set_defaults(func=cmd_serve)
