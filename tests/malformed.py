"""A corpus of malformed inputs for every ``unilip`` command, and the worker that runs it under bounds (issue 13).

Why here: the test (tests/test_malformed_inputs.py) and the before/after table (benchmarks/malformed_inputs.py) run
the same cases. :func:`make_inputs` writes the bad files (images of odd geometry, broken model folders, hostile
YAML); :func:`cases` lists ``(category, name, argv)`` for every command over them; :func:`main` (``python
tests/malformed.py INPUTS OUT.json``) runs the cases one by one *in one process* under an address-space limit and a
per-case alarm, each in a fresh empty working folder, and records how each ended:

- ``clean``: non-zero exit, exactly one ``unilip: error:`` line, no traceback, nothing left in the folder;
- ``traceback``: a Python traceback (or an exception escaping ``main``);
- ``unclear``: non-zero exit but not exactly one error line;
- ``memory``: MemoryError under the limit; ``hang``: the alarm fired; ``accepted``: exit 0 on invalid input;
- ``leftover``: otherwise clean, but files were left behind.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import sys
import zlib
from pathlib import Path

OUTCOMES = ("clean", "traceback", "unclear", "memory", "hang", "accepted", "leftover")
CATEGORIES = ("1 images", "2 numbers", "3 configs", "4 model folders", "5 text", "7 outputs", "8 endless")
ADDRESS_SPACE = 10 * 2**30  # bytes: far above what any case needs when refused early (torch maps ~2 GB)
SECONDS = 30  # per case
MAX_ERROR_CHARS = 1000


# ------------------------------------------------------------------------------------------------------ inputs


def _png_with_header(width: int, height: int) -> bytes:
    """A valid PNG signature + IHDR claiming ``width`` x ``height``, with one tiny IDAT: a decompression bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def make_inputs(root: Path) -> Path:
    """Write every malformed input under ``root`` (once per run; the cases only read them)."""
    from PIL import Image
    from safetensors.torch import load_file, save_file

    from unilip.pretrained import BUNDLED_DIR

    img, models, cfg = root / "images", root / "models", root / "configs"
    for d in (img, models, cfg):
        d.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 64), (200, 30, 30)).save(img / "good.png")
    Image.new("RGB", (1, 50_000)).save(img / "strip.png")
    Image.new("RGB", (30, 900)).save(img / "tall.png")
    (img / "bomb.png").write_bytes(_png_with_header(100_000, 100_000))
    (img / "truncated.png").write_bytes((img / "good.png").read_bytes()[:60])
    (img / "empty.png").write_bytes(b"")
    (img / "text.png").write_text("not an image\n")
    (img / "folder.png").mkdir(exist_ok=True)
    Image.new("RGB", (64, 64)).save(img / "caf\udce9.png")  # the bytes caf\xe9.png: a Latin-1 name, not UTF-8

    def variant(name: str, component: str) -> Path:
        target = models / name
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(BUNDLED_DIR / component, target)
        return target

    variant("mllm-list", "mllm").joinpath("config.json").write_text("[1, 2]")
    variant("mllm-null", "mllm").joinpath("config.json").write_text("null")
    weights = variant("mllm-missing-lm", "mllm") / "model.safetensors"
    state = load_file(weights)
    state.pop(next(k for k in state if "language_model" in k and "mlp" in k))
    save_file(state, weights, metadata={"format": "pt"})
    weights = variant("mllm-truncated", "mllm") / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    weights = variant("mllm-pickle", "mllm") / "model.safetensors"
    weights.rename(weights.with_name("pytorch_model.bin"))
    weights = variant("mllm-misshapen", "mllm") / "model.safetensors"
    state = load_file(weights)
    key = next(k for k in state if k.endswith("embed_tokens.weight"))
    state[key] = state[key][:, :8].contiguous()
    save_file(state, weights, metadata={"format": "pt"})
    variant("tok-list", "tokenizer").joinpath("config.json").write_text("[]")
    weights = variant("tok-truncated", "tokenizer") / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    (variant("tok-no-weights", "tokenizer") / "model.safetensors").unlink()
    (models / "empty").mkdir(exist_ok=True)
    pipe = models / "pipeline-bad-generator"
    shutil.rmtree(pipe, ignore_errors=True)
    for component in ("mllm", "tokenizer", "generator"):
        shutil.copytree(BUNDLED_DIR / component, pipe / component)
    (pipe / "generator" / "config.json").write_text('{"format": 1, "generator": {"num_queries": 1e99}}')
    pipe2 = models / "pipeline-huge-generator"
    shutil.rmtree(pipe2, ignore_errors=True)
    shutil.copytree(pipe, pipe2)
    saved = json.loads((BUNDLED_DIR / "generator" / "config.json").read_text())
    saved["generator"]["dit_num_layers"] = 10**9
    (pipe2 / "generator" / "config.json").write_text(json.dumps(saved))

    levels = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi"):
        levels.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    (cfg / "bomb.yaml").write_text("\n".join(levels) + "\n")
    (cfg / "recursive.yaml").write_text("a: &x [*x]\n")
    (cfg / "deep.yaml").write_text("[" * 100_000 + "]" * 100_000 + "\n")
    (cfg / "wrong-section.yaml").write_text("optim: 5\n")
    (cfg / "big.yaml").write_text("# " + "x" * (2 << 20) + "\n")
    (cfg / "latin1.yaml").write_bytes("loop:\n  output_dir: caf\xe9\n".encode("latin-1"))
    (cfg / "list.yaml").write_text("- 1\n- 2\n")
    (cfg / "long-value.yaml").write_text("loop:\n  output_dir: " + "x" * 100_000 + "\n  seed: [" + "7, " * 50_000 + "]\n")
    (cfg / "nan.yaml").write_text("optim:\n  lr: .nan\n")
    (cfg / "world-bomb.yaml").write_text("\n".join(levels) + "\n")
    fifo = cfg / "fifo.yaml"
    if not fifo.exists():
        os.mkfifo(fifo)
    return root


# ------------------------------------------------------------------------------------------------------- cases


def cases(root: Path) -> list[tuple[str, str, list[str]]]:
    """(category, name, argv) of every malformed case; paths point into ``root`` (from :func:`make_inputs`)."""
    img, models, cfg = root / "images", root / "models", root / "configs"
    good = str(img / "good.png")
    out: list[tuple[str, str, list[str]]] = []

    def add(category: str, name: str, *argv: str) -> None:
        out.append((category, name, [str(a) for a in argv]))

    for bad in ("strip", "bomb", "truncated", "empty", "text", "folder"):
        path = img / f"{bad}.png"
        add("1 images", f"reconstruct {bad}", "reconstruct", path, "--model", "mini", "-o", "rec")
        add("1 images", f"ask {bad}", "ask", path, "what", "colour?")
        add("1 images", f"edit {bad}", "edit", path, "make", "it", "blue", "-o", "ed")
        add("1 images", f"detect {bad}", "miniworld", "detect", path)
    add("1 images", "reconstruct --size 4096 of a 1:30 image", "reconstruct", img / "tall.png", "--model", "mini",
        "--size", "4096", "-o", "rec")
    add("1 images", "reconstruct --size huge", "reconstruct", good, "--model", "mini", "--size", "100000", "-o", "rec")
    add("1 images", "eval recon a folder of bad images", "eval", "recon", "--model", "mini", "--data", img / "folder.png",
        "-o", "r.json")

    for flag, values in (("--guidance", ("nan", "inf", "-1", "0.5", "1e9")), ("--steps", ("0", "-1", "1e3", "100000")),
                         ("--seed", ("-1", str(2**64), "x")), ("-n", ("0", "1000000", "2.5"))):
        for v in values:
            add("2 numbers", f"generate {flag} {v}", "generate", "a", "red", "circle", flag, v, "-o", "gen")
    for v in ("nan", "0", "1e9"):
        add("2 numbers", f"edit --guidance {v}", "edit", good, "make", "it", "blue", "--guidance", v, "-o", "ed")
    for name in ("geneval-mini", "imgedit-mini", "wise-mini"):
        for flag, v in (("--samples", "0"), ("--samples", str(10**9)), ("--steps", "0"), ("--guidance", "nan"),
                        ("--seed", str(2**70))):
            add("2 numbers", f"eval {name} {flag} {v}", "eval", name, flag, v, "-o", "ev")
    for flag, v in (("--n", "0"), ("--n", "-5"), ("--n", str(10**12)), ("--shard-size", "0"), ("--size", "0"),
                    ("--size", "1000000"), ("--seed", str(2**64))):
        add("2 numbers", f"miniworld make {flag} {v}", "miniworld", "make", "--out", "mw", "--n", "3", flag, v)
    add("2 numbers", "demo --n 0", "demo", "--n", "0", "-o", "demo")
    add("2 numbers", "demo --n 10**6", "demo", "--n", "1000000", "-o", "demo")
    add("2 numbers", "latent-scale --n 0", "latent-scale", "--n", "0")
    add("2 numbers", "eval recon --batch-size 0", "eval", "recon", "--model", "mini", "--data", "miniworld:test",
        "--n", "4", "--batch-size", "0", "-o", "r.json")
    add("2 numbers", "eval understanding --n 0", "eval", "understanding", "--n", "0")
    add("2 numbers", "dump geneval --samples 0", "dump", "geneval", "--prompts", good, "--samples", "0", "-o", "d")
    add("2 numbers", "reproduce generator --edit-share 2", "reproduce", "generator", "-o", "rg", "--edit-share", "2")
    add("2 numbers", "serve --port 70000", "serve", "--port", "70000")
    add("2 numbers", "serve --concurrency 0", "serve", "--concurrency", "0")
    for override in ("loop.ema_decay=1", "loop.ema_decay=-0.5", "optim.betas=[1.5, 0.9]", "optim.grad_clip=.nan",
                     "optim.lr=.inf", "loop.batch_size=0", "loop.max_steps=99999999999", "loop.seed=100000000000000000000",
                     "model.tokenizer.image_size=100000000", "model.generator.num_inference_steps=0"):
        add("2 numbers", f"train generator {override}", "train", "generator", "--config",
            "configs/generator/mini.yaml", override, "loop.output_dir=run")
    add("2 numbers", "train tokenizer loop.ema_decay=1.0", "train", "tokenizer", "--config",
        "configs/tokenizer/mini_stage1.yaml", "loop.ema_decay=1.0", "loop.output_dir=run")

    for name in ("bomb", "recursive", "deep", "wrong-section", "big", "latin1", "list", "long-value", "nan", "fifo"):
        path = cfg / f"{name}.yaml"
        override = "optim.lr=1e-3" if name == "wrong-section" else "loop.max_steps=3"  # never fixes the file
        add("3 configs", f"train generator --config {name}", "train", "generator", "--config", path, override,
            "loop.output_dir=run")
        add("3 configs", f"config show --config {name}", "config", "show", "--config", path)
    add("3 configs", "miniworld sheet --config bomb", "miniworld", "sheet", "--config", cfg / "world-bomb.yaml", "--out", "s")
    add("3 configs", "config show /dev/zero", "config", "show", "--config", "/dev/zero")
    add("3 configs", "override with a 100k value", "config", "show", "generator.cfg_scale=" + "9" * 100_000)
    add("3 configs", "override with a long unknown key", "config", "show", "x" * 10_000 + "=1")
    add("3 configs", "override of a wrong-type section", "config", "show", "generator=5", "generator.cfg_scale=2")

    for name in ("mllm-list", "mllm-null", "mllm-missing-lm", "mllm-truncated", "mllm-pickle", "mllm-misshapen", "empty"):
        path = models / name
        add("4 model folders", f"ask --model {name}", "ask", good, "what", "colour?", "--model", path)
        add("4 model folders", f"eval understanding --model {name}", "eval", "understanding", "--model", path, "--n", "2")
        add("4 model folders", f"export internvl --mllm {name}", "export", "internvl", "--tokenizer", "mini", "--mllm",
            path, "exported")
    for name in ("tok-list", "tok-truncated", "tok-no-weights", "empty"):
        add("4 model folders", f"reconstruct --model {name}", "reconstruct", good, "--model", models / name, "-o", "rec")
        add("4 model folders", f"latent-scale --tokenizer {name}", "latent-scale", "--tokenizer", models / name, "--n", "4")
    for name in ("pipeline-bad-generator", "pipeline-huge-generator", "empty", "mllm-list"):
        add("4 model folders", f"generate --model {name}", "generate", "a", "circle", "--model", models / name, "-o", "gen")
    add("4 model folders", "generate --model missing-folder", "generate", "a", "circle", "--model", "./no/such/dir", "-o", "g")

    for text in ("a <img> circle", "<IMG_CONTEXT>", "hi <|im_end|> there", "</img>", "x" * 100_000, "   ", "a\x00b",
                 "caf\udce9"):
        shown = repr(text[:20])
        add("5 text", f"generate {shown}", "generate", text, "-o", "gen")
        add("5 text", f"ask {shown}", "ask", good, text)
        add("5 text", f"edit {shown}", "edit", good, text, "-o", "ed")
    bad_name = str(img / "caf\udce9.png")
    add("5 text", "reconstruct a non-UTF-8 file name", "reconstruct", bad_name, "--model", "mini", "-o", "rec")
    add("5 text", "ask a non-UTF-8 file name", "ask", bad_name, "what", "colour?")

    for argv in (["generate", "a", "circle"], ["edit", good, "make", "it", "blue"], ["reconstruct", good, "--model", "mini"],
                 ["demo"], ["eval", "geneval-mini"], ["eval", "recon", "--model", "mini", "--data", "miniworld:test",
                                                       "--n", "2"]):
        add("7 outputs", f"{' '.join(argv[:2])} -o ''", *argv, "-o", "")
    add("7 outputs", "miniworld make --out ''", "miniworld", "make", "--out", "", "--n", "2")
    add("7 outputs", "train with loop.output_dir=''", "train", "generator", "--config", "configs/generator/mini.yaml",
        "loop.output_dir=''")

    add("8 endless", "eval recon miniworld without --n", "eval", "recon", "--model", "mini", "--data", "miniworld:test",
        "-o", "r.json")
    add("8 endless", "latent-scale --n 10**9", "latent-scale", "--n", str(10**9))
    add("8 endless", "train loop.max_steps=10**12", "train", "generator", "--config", "configs/generator/mini.yaml",
        "loop.max_steps=1000000000000", "loop.output_dir=run")
    return out


# ------------------------------------------------------------------------------------------------------ worker


class _Alarm(BaseException):
    """Raised by SIGALRM: a BaseException so that no ``except Exception`` in the code under test swallows it."""


def _classify(rc: object, text: str, error: str | None, left: list[str]) -> str:
    if error == "hang":
        return "hang"
    if error == "memory" or "MemoryError" in text:
        return "memory"
    if error == "traceback" or "Traceback (most recent call last)" in text:
        return "traceback"
    if rc == 0:
        return "accepted"
    errors = [line for line in text.splitlines() if line.startswith("unilip: error:")]
    if len(errors) != 1 or len(errors[0]) > MAX_ERROR_CHARS:  # one line, never an echo of a megabyte of input
        return "unclear"
    return "leftover" if left else "clean"


def run_case(argv: list[str], repo: Path, scratch: Path) -> dict:
    """Run ``unilip argv`` in-process in the empty folder ``scratch``; stdout+stderr go to a file (fd level)."""
    import signal
    import traceback

    from unilip.cli import main

    scratch.mkdir(parents=True)
    for name in ("configs",):  # cases name the repository's configs relative to the working folder
        (scratch / name).symlink_to(repo / name)
    before = set(os.listdir(scratch))
    log = scratch.parent / (scratch.name + ".log")
    saved = os.dup(1), os.dup(2)
    cwd = os.getcwd()
    rc: object = None
    error = None
    with open(log, "w+b") as f:
        sys.stdout.flush(), sys.stderr.flush()
        os.dup2(f.fileno(), 1), os.dup2(f.fileno(), 2)

        def alarm(signum, frame):
            raise _Alarm

        signal.signal(signal.SIGALRM, alarm)
        signal.alarm(SECONDS)
        try:
            os.chdir(scratch)
            rc = main(argv)
        except SystemExit as e:
            rc = e.code
        except _Alarm:
            error = "hang"
        except MemoryError:
            error = "memory"
        except BaseException:
            error = "traceback"
            traceback.print_exc()
        finally:
            signal.alarm(0)
            os.chdir(cwd)
            sys.stdout.flush(), sys.stderr.flush()
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
            os.close(saved[0]), os.close(saved[1])
        f.seek(0)
        text = f.read().decode("utf-8", "backslashreplace")
    left = sorted(set(os.listdir(scratch)) - before)
    shutil.rmtree(scratch, ignore_errors=True)
    log.unlink()
    return {"rc": rc if isinstance(rc, int) or rc is None else str(rc), "outcome": _classify(rc, text, error, left),
            "left": left, "tail": text[-600:]}


def main(inputs: str, results: str, only: str = "", isolate: bool = False) -> None:
    """Run every case (or those whose name contains ``only``) and write ``results`` (JSON: one row per case).

    In one process by default (fast: one import of torch). ``isolate`` runs each case in its own process instead,
    with a wall-clock limit: the alarm cannot interrupt a hang inside C code (a 500-megapixel resize), and an
    out-of-memory kill takes the process with it; use it to measure code that may not survive its inputs."""
    import resource
    import subprocess

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    repo = Path(__file__).resolve().parents[1]
    root = Path(inputs)
    scratch = root / "scratch"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    if not isolate:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
    rows = []
    for i, (category, name, argv) in enumerate(cases(root)):
        if only and only not in name:
            continue
        if isolate:
            one = scratch / f"{i:04d}.json"
            try:
                done = subprocess.run([sys.executable, __file__, "--index", str(i), inputs, str(one)],
                                      timeout=SECONDS + 60, capture_output=True, text=True)
                row = json.loads(one.read_text()) if one.is_file() else {
                    "rc": done.returncode, "outcome": "memory" if done.returncode < 0 else "traceback", "left": [],
                    "tail": done.stderr[-600:]}
            except subprocess.TimeoutExpired:
                row = {"rc": None, "outcome": "hang", "left": [], "tail": ""}
            shutil.rmtree(scratch / f"{i:04d}", ignore_errors=True)
        else:
            row = run_case(argv, repo, scratch / f"{i:04d}")
        row = {"category": category, "name": name, **row}
        rows.append(row)
        print(f"{row['outcome']:9s} {category:16s} {name[:90]}", file=sys.__stderr__, flush=True)
    Path(results).write_text(json.dumps(rows, indent=1))


def _one(index: int, inputs: str, result: str) -> None:
    """Run case ``index`` alone (the child of ``main(isolate=True)``) and write its row."""
    import resource

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
    root = Path(inputs)
    _, _, argv = cases(root)[index]
    row = run_case(argv, Path(__file__).resolve().parents[1], root / "scratch" / f"{index:04d}")
    Path(result).write_text(json.dumps(row))


def table(rows: list[dict]) -> str:
    """The per-category table of outcomes (markdown)."""
    lines = ["| category | cases | " + " | ".join(OUTCOMES) + " |", "|---" * (len(OUTCOMES) + 2) + "|"]
    for category in [*CATEGORIES, "all"]:
        mine = [r for r in rows if category in ("all", r["category"])]
        counts = [sum(r["outcome"] == o for r in mine) for o in OUTCOMES]
        lines.append(f"| {category} | {len(mine)} | " + " | ".join(map(str, counts)) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--make":
        make_inputs(Path(sys.argv[2]))
    elif len(sys.argv) > 1 and sys.argv[1] == "--index":
        _one(int(sys.argv[2]), sys.argv[3], sys.argv[4])
    elif len(sys.argv) > 1 and sys.argv[1] == "--isolate":
        main(*sys.argv[2:], isolate=True)
    else:
        main(*sys.argv[1:])
