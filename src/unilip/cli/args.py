"""What several commands share: the parser class, argument types that check their ranges, and the loaders of what
the arguments name (a user's image, a tokenizer, an MLLM, a pipeline).

Every check raises before a model loads; every loader goes through :func:`unilip.pretrained.resolve_model`, so
``mini``, a local directory, a hub id and an official checkpoint mean the same to every command.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from unilip.checks import MAX_INPUT_PIXELS, check_float, check_int, short
from unilip.devices import DTYPES, QUANTIZATIONS, resolve_device, resolve_dtype
from unilip.errors import ImageLoadError, UniLIPError


class Parser(argparse.ArgumentParser):
    """argparse with one ``unilip: error:`` line for a bad argument (and the subcommand's --help to read)."""

    def error(self, message: str):
        self.exit(2, f"unilip: error: {message} (see `{self.prog} --help`)\n")


def _ranged(kind: str, check, lo, hi):
    """An argparse type: ``check("value", text, lo, hi)`` (unilip.checks), its UniLIPError as argparse's error."""
    def parse(text: str):
        try:
            return check("value", text, lo, hi)
        except UniLIPError as err:
            raise argparse.ArgumentTypeError(str(err).removeprefix("value: ")) from None

    parse.__name__ = kind
    return parse


def int_in(lo: int, hi: int):
    """A whole number in [lo, hi]; the text must read as an int (``1e3`` and ``2.5`` are refused)."""
    def check(name: str, text: str, lo: int, hi: int) -> int:
        try:
            value = int(text)
        except ValueError:
            raise UniLIPError(f"{name}: expected a whole number in [{lo}, {hi}], got {short(text)}") from None
        return check_int(name, value, lo, hi)

    return _ranged("int", check, lo, hi)


def float_in(lo: float, hi: float):
    """A finite number in [lo, hi]."""
    return _ranged("float", check_float, lo, hi)


def path_arg(text: str) -> Path:
    """An argparse type: a non-empty path (``-o ""`` would silently mean the current folder) that is valid UTF-8."""
    if not text:
        raise argparse.ArgumentTypeError("an empty path is not allowed (write . for the current folder)")
    if "\x00" in text:
        raise argparse.ArgumentTypeError("a path cannot contain a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise argparse.ArgumentTypeError(f"the path {ascii(text)[:200]} is not valid UTF-8; rename the file") from None
    return Path(text)


def user_image(path: Path):
    """An image a user names on the command line, under the web page's limits (16.8 MP, 32:1)."""
    from unilip.data.images import load_image

    return load_image(path, max_pixels=MAX_INPUT_PIXELS)


def model_input(path: Path, size: int, image=None):
    """``path`` (or its already read ``image``) resized + centre-cropped to ``size``: (3, size, size); errors name
    the file."""
    from unilip.data.loader import eval_transform

    image = user_image(path) if image is None else image
    try:
        return eval_transform(image, size)
    except ImageLoadError as err:
        raise ImageLoadError(str(path), err.reason) from None


def add_mllm_args(q: argparse.ArgumentParser) -> None:
    """``--model``, ``--encoder`` and ``--tokenizer``: the MLLM, and the UniLIP encoder to swap into it (and where
    and in what precision they run)."""
    q.add_argument("--model", default="mini", help="MLLM: 'mini' (bundled), an InternVL directory or repo id")
    q.add_argument("--encoder", choices=["original", "unilip"], default="original",
                   help="the MLLM's own vision encoder, or the UniLIP encoder of --tokenizer swapped in")
    q.add_argument("--tokenizer", default="mini", help="UniLIP tokenizer for --encoder unilip ('mini' = bundled)")
    add_runtime_args(q)


def add_runtime_args(q: argparse.ArgumentParser, quantize: bool = False) -> None:
    """``--device`` and ``--dtype``: where the models run and the precision their weights are converted to (and,
    for the pipeline's commands, ``--quantize``)."""
    q.add_argument("--device", help="cpu, cuda, cuda:1, mps, ... (default: cuda when available, else cpu)")
    q.add_argument("--dtype", choices=DTYPES, default="fp32",
                   help="weights' precision (default fp32; bf16 is about 2x faster on CPUs with AVX512-BF16 and on GPUs)")
    if quantize:
        q.add_argument("--quantize", choices=QUANTIZATIONS, help="8-bit weights for the language model, connector "
                       "and DiT (torchao; pip install \"unilip[quant]\")")
        q.add_argument("--offload", choices=["model", "sequential"], help="keep the weights in CPU memory and move "
                       "them to --device only while they run: 'model' a component at a time (less accelerator memory, "
                       "one copy per component per call), 'sequential' a layer at a time (least memory, slowest)")
        q.add_argument("--compile", action="store_true", help="torch.compile the decoder: the first call pays the "
                       "compilation (~40 s at 1b sizes), later ones decode faster")


def runtime(args: argparse.Namespace):
    """(device, dtype) of ``--device`` / ``--dtype``, checked before any model loads."""
    return resolve_device(getattr(args, "device", None)), resolve_dtype(getattr(args, "dtype", None))


def load_tokenizer(name: str, args: argparse.Namespace):
    """The UniLIP tokenizer ``name`` names, in eval mode, on ``args``' device and precision."""
    from unilip.pretrained import resolve_model
    from unilip.tokenizer import UniLIPTokenizer

    device, dtype = runtime(args)
    return UniLIPTokenizer.from_pretrained(resolve_model(name, "tokenizer")).eval().to(device=device, dtype=dtype)


def load_mllm(args: argparse.Namespace):
    """The MLLM of ``--model``, with the UniLIP encoder of ``--tokenizer`` swapped in when ``--encoder unilip``."""
    from unilip.mllm.model import MLLM
    from unilip.pretrained import resolve_model

    device, dtype = runtime(args)
    mllm = MLLM.from_pretrained(resolve_model(args.model, "mllm"), dtype=dtype)
    if args.encoder == "unilip":
        mllm.use_encoder(load_tokenizer(args.tokenizer, args).encoder)
    return mllm.to(device).eval()


def load_pipeline(name: str, args: argparse.Namespace):
    """The :class:`~unilip.pipeline.UniLIPPipeline` ``name`` names, on ``args``' device and precision, quantized,
    compiled and offloaded as its flags say."""
    from unilip.pipeline import UniLIPPipeline

    device, dtype = runtime(args)
    pipe = UniLIPPipeline.from_pretrained(name, dtype=dtype)
    if getattr(args, "quantize", None):
        pipe.quantize(args.quantize)
    if getattr(args, "compile", False):
        pipe.compile()
    offload = getattr(args, "offload", None)
    if offload == "sequential":
        return pipe.enable_sequential_cpu_offload(device)
    return pipe.enable_model_cpu_offload(device) if offload == "model" else pipe.to(device)
