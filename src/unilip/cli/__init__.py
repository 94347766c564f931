"""The ``unilip`` command. Thin: parse arguments, build a config, call the library.

One module per command group, each parser beside its handler (``generate.py``: ``generate`` and ``edit``;
``evaluate.py``: ``eval ...``; ...); ``args.py`` holds what several share. Every user mistake (bad config key,
unreadable image, occupied output directory) ends as one ``unilip: error: ...`` line on stderr and exit status 2,
never a traceback. Heavy libraries are imported inside the handlers that use them, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from unilip import __version__
from unilip.cli import ask, config, convert, demo, dump, evaluate, generate, miniworld, reconstruct, reproduce, train
from unilip.cli.args import Parser
from unilip.errors import UniLIPError

__all__ = ["build_parser", "entry", "main"]

#: Loggers whose import-time warnings say nothing about the command: torchao (the quant extra) reports its CUDA-only
#: kernels missing on a CPU, and torch and diffusers each warn once about torchao's types. ``-v`` shows them.
QUIET_LOGGERS = ("torchao", "torch.utils._pytree", "diffusers.quantizers.torchao.torchao_quantizer")


def build_parser() -> argparse.ArgumentParser:
    """The whole command tree, in the order ``unilip --help`` lists it."""
    parser = Parser(prog="unilip", description="UniLIP: one CLIP encoder to reconstruct, understand, generate and edit images.")
    parser.add_argument("--version", action="version", version=f"unilip {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in (demo.add_demo_parser, config.add_parsers, miniworld.add_parsers, train.add_train_parser,
                train.add_latent_scale_parser, generate.add_parsers, reconstruct.add_parsers, ask.add_parsers,
                demo.add_serve_parser, convert.add_convert_parser, convert.add_export_parser, reproduce.add_parsers,
                dump.add_parsers, evaluate.add_parsers):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; the exit status: 0, 1 (some inputs of a many-input command failed), 2 (an error), 130."""
    for stream in (sys.stdout, sys.stderr):  # a prompt or file name the terminal cannot show must not crash a command
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # KEY=VALUE overrides after an option (`convert SRC DST --preset 1b a.b=1`) are overrides too
        if not isinstance(getattr(args, "overrides", None), list) or any(e.startswith("-") or "=" not in e for e in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = [*args.overrides, *extra]
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not args.verbose:  # import-time chatter of optional libraries (torchao's CUDA-only kernels on a CPU, ...)
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
    try:
        return args.func(args)
    except UniLIPError as err:
        print(f"unilip: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # a file system problem with a path the user gave: say which, no traceback
        print(f"unilip: error: {err.strerror or err}{f': {err.filename}' if err.filename else ''}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("unilip: interrupted", file=sys.stderr)
        return 130


def entry() -> None:
    """The console entry point. Under torchrun, exit without the interpreter's teardown: with torch 2.13, gloo's
    process group can hang or abort while destroying its threads at exit, after training has finished and
    everything is written, which would turn a finished run into a failed exit status."""
    code = main()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
