"""``unilip dump geneval | wise | imgedit``: the official benchmarks' images, in the folder layouts their own scorers
read, split over processes by ``--index / --n-chunks``."""

from __future__ import annotations

import argparse

from unilip.checks import MAX_BATCH, MAX_GUIDANCE, MAX_IMAGES_PER_PROMPT, MAX_SEED, MAX_STEPS, SCHEDULERS
from unilip.cli.args import add_runtime_args, float_in, int_in, load_pipeline, path_arg


def cmd_dump(args: argparse.Namespace) -> int:
    from unilip.eval.dump import chunk_batches, dump_samples, geneval_plan, imgedit_plan, settings_name, wise_plan

    # every input is checked before the model loads and before anything is written
    if args.dump_command == "geneval":
        plan = geneval_plan(args.prompts, args.samples)
    elif args.dump_command == "wise":
        plan = wise_plan(args.prompts)
    else:
        plan = imgedit_plan(args.bench, args.images)
    chunk_batches(len(plan.items), args.batch_size, args.index, args.n_chunks)
    settings = dump_samples(load_pipeline(args.model, args), plan, args.out, model=args.model, steps=args.steps,
                            guidance=args.guidance, scheduler=args.scheduler, seed=args.seed,
                            batch_size=args.batch_size, index=args.index, n_chunks=args.n_chunks)
    c, s = settings["chunk"], settings["sampling"]
    print(f"{plan.benchmark} chunk {args.index} of {args.n_chunks}: {c['prompts']} of {c['prompts_total']} prompts "
          f"({c['drawn']} drawn, {c['skipped_done']} already done; {s['steps']} steps, guidance {s['guidance']}) "
          f"in {args.out}; settings in {args.out / settings_name(args.index, args.n_chunks)}")
    return 0


def _add_dump_args(q: argparse.ArgumentParser, layout: str) -> None:
    q.add_argument("--model", default="mini", help="pipeline directory (mllm/, tokenizer/, generator/), repo id, or 'mini'")
    q.add_argument("--steps", type=int_in(1, MAX_STEPS), help="sampling steps (default: the generator config's)")
    q.add_argument("--guidance", type=float_in(1, MAX_GUIDANCE), help="classifier-free guidance scale (default: the generator config's; "
                                                                "official 4.5, ImgEdit with the 2B model 4.0)")
    q.add_argument("--seed", type=int_in(0, MAX_SEED), default=0, help="base seed: sample k of prompt i has its own fixed seed, "
                                                                   "whatever the chunking")
    q.add_argument("--scheduler", choices=SCHEDULERS, help="flow Euler, DPM-Solver++ or UniPC, no shift (default: the "
                   "model's own: for converted official checkpoints SANA's DPM-Solver, flow_shift 3; else Euler)")
    q.add_argument("--batch-size", type=int_in(1, MAX_BATCH), default=4, help="prompts per pipeline call (default 4); keep it when "
                                                                         "resuming or adding chunks: it fixes the last bits")
    q.add_argument("--index", type=int_in(0, 9999), default=0, help="this process's chunk, 0..n-chunks-1 (default 0)")
    q.add_argument("--n-chunks", type=int_in(1, 10000), default=1, help="number of processes sharing the work (default 1)")
    q.add_argument("-o", "--out", type=path_arg, required=True, help=f"output folder ({layout})")
    add_runtime_args(q, quantize=True)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dump", help="write the sample folders the official GenEval / WISE / ImgEdit scorers read",
                       description=("Generate the official benchmarks' images into the folder layout their own "
                                    "scorers read (GenEval: mmdetection; WISE, ImgEdit: GPT judges), with the settings "
                                    "and seeds beside them. Split the work over GPUs with --index I --n-chunks K (one "
                                    "process per GPU, same output folder); a rerun skips finished prompts."))
    dump_sub = p.add_subparsers(dest="dump_command", metavar="BENCH", required=True)

    q = dump_sub.add_parser("geneval", help="GenEval: {i:05d}/samples/{k:05d}.png + {i:05d}/metadata.jsonl",
                            description=("Images for GenEval's prompts, laid out as GenEval's evaluate_images.py reads "
                                         "them: OUT/{i:05d}/metadata.jsonl (the prompt's line) and "
                                         "OUT/{i:05d}/samples/{k:05d}.png, i the prompt's position in the file."))
    q.add_argument("--prompts", type=path_arg, required=True, help="GenEval's evaluation_metadata.jsonl (one JSON object per line)")
    q.add_argument("--samples", type=int_in(1, MAX_IMAGES_PER_PROMPT), default=4, help="images per prompt (default 4, as the official)")
    _add_dump_args(q, "{i:05d}/samples/{k:05d}.png, {i:05d}/metadata.jsonl")
    q.set_defaults(func=cmd_dump)

    q = dump_sub.add_parser("wise", help="WISE: {prompt_id}.png",
                            description=("One image per WISE prompt, OUT/{prompt_id}.png, as WISE's gpt_eval.py reads "
                                         "them, from every *.json in WISE's data folder (fields 'Prompt', 'prompt_id')."))
    q.add_argument("--prompts", type=path_arg, required=True, help="WISE's data/ folder (cultural_common_sense.json, ...)")
    _add_dump_args(q, "{prompt_id}.png")
    q.set_defaults(func=cmd_dump)

    q = dump_sub.add_parser("imgedit", help="ImgEdit single-turn: {key}.png",
                            description=("One edit per entry of ImgEdit's singleturn.json, OUT/{key}.png, as ImgEdit's "
                                         "GPT judge reads them; the source of entry key is IMAGES/<entry's 'id'>, "
                                         "and the instruction its 'prompt'. Missing sources are reported before any "
                                         "generation."))
    q.add_argument("--bench", type=path_arg, required=True, help="ImgEdit's Benchmark/singleturn/singleturn.json")
    q.add_argument("--images", type=path_arg, help="folder the entries' 'id' paths are relative to (default: the JSON's folder)")
    _add_dump_args(q, "{key}.png")
    q.set_defaults(func=cmd_dump)
