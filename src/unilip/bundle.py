"""Write the embedded default: the mini MLLM, the mini UniLIP tokenizer and the mini generator, in fp16, into the
package (a pipeline directory: ``mllm/``, ``tokenizer/``, ``generator/``).

    python -m unilip.bundle --mllm runs/mini-mllm-instruct/final --tokenizer runs/mini-tokenizer-stage3/final \
        --generator runs/mini-generator/final

``scripts/train_bundled_mini.sh`` runs the whole recipe (every command and config) and then this. The weights are
re-committed only when the recipe changes: git keeps every version of them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import torch

from unilip.hub import write_model_index
from unilip.pretrained import BUNDLED_DIR


#: The bundled generator's default sampler, chosen by `python benchmarks/steps_vs_quality.py`: UniPC at 12 steps
#: scored at least what Euler at 20 did on mini GenEval and ImgEdit (0.623 / 0.668 vs 0.612 / 0.664) in 60 % of the time.
BUNDLED_SAMPLER = ("unipc", 12)


def write_bundle(mllm_dir: str | Path, tokenizer_dir: str | Path, generator_dir: str | Path | None = None,
                 dest: Path = BUNDLED_DIR, notes: dict | None = None) -> dict:
    """Copy the models to ``dest`` in fp16 with a PROVENANCE.json; returns the sizes in bytes."""
    from unilip.generation.model import UniLIPGenerator
    from unilip.mllm.model import MLLM
    from unilip.tokenizer import UniLIPTokenizer

    dest = Path(dest)
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    mllm = MLLM.from_pretrained(mllm_dir)
    tokenizer = UniLIPTokenizer.from_pretrained(tokenizer_dir)
    if generator_dir is not None:
        from unilip.generation.flow import make_scheduler

        generator = UniLIPGenerator.from_pretrained(generator_dir, mllm, tokenizer).half()
        generator.cfg.generator.num_inference_steps = BUNDLED_SAMPLER[1]
        generator.save_pretrained(tmp / "generator")
        make_scheduler(BUNDLED_SAMPLER[0]).save_config(tmp / "generator")
    mllm.half().save_pretrained(tmp / "mllm")
    tokenizer.half().save_pretrained(tmp / "tokenizer")
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = ""
    sizes = {p.relative_to(tmp).as_posix(): p.stat().st_size for p in sorted(tmp.rglob("*")) if p.is_file()}
    provenance = {"mllm_from": str(mllm_dir), "tokenizer_from": str(tokenizer_dir),
                  "generator_from": str(generator_dir) if generator_dir else None, "git_commit": commit,
                  "recipe": "scripts/train_bundled_mini.sh", "dtype": "float16", "bytes": sizes, **(notes or {})}
    write_model_index(tmp)
    (tmp / "PROVENANCE.json").write_text(json.dumps(provenance, indent=2) + "\n")
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return sizes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m unilip.bundle", description=__doc__.splitlines()[0])
    ap.add_argument("--mllm", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--generator", help="the generator's final/ directory (leave out to bundle no generator)")
    ap.add_argument("--dest", type=Path, default=BUNDLED_DIR)
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    sizes = write_bundle(args.mllm, args.tokenizer, args.generator, args.dest)
    total = sum(sizes.values())
    print(f"wrote {args.dest}: {total / 2**20:.2f} MiB in {len(sizes)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
