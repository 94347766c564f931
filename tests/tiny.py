"""Config overrides for the tiny models the tests build: 32 px images, one layer everywhere, a 2x2 latent."""

TINY_MODEL = [
    "model.mllm.vision.hidden_size=32", "model.mllm.vision.num_layers=1", "model.mllm.vision.num_heads=2",
    "model.mllm.vision.intermediate_size=64", "model.mllm.vision.image_size=32",
    "model.mllm.language.hidden_size=32", "model.mllm.language.num_layers=1", "model.mllm.language.num_heads=2",
    "model.mllm.language.num_kv_heads=1", "model.mllm.language.intermediate_size=64",
    "model.tokenizer.image_size=32", "model.tokenizer.decoder_block_out_channels=[8, 8, 16, 16, 32]",
    "model.tokenizer.decoder_attention_head_dim=8", "model.generator.connector_layers=1",
    "model.miniworld.image_size=32", "model.miniworld.sizes={small: 0.3, large: 0.45}", "model.miniworld.max_objects=2",
]
# A tiny generator on top of TINY_MODEL: 3 queries, a 1-layer DiT, 2 sampling steps.
TINY_DIT = ["model.generator.num_queries=3", "model.generator.dit_num_layers=1", "model.generator.dit_num_heads=2",
            "model.generator.dit_cross_heads=2", "model.generator.dit_cross_head_dim=16",
            "model.generator.caption_channels=24", "model.generator.latent_scale=2.0",
            "model.generator.num_inference_steps=2"]


def save_tiny_components(root):
    """A random tiny MLLM and UniLIP tokenizer (seed 0) in ``root/mllm`` and ``root/tokenizer``, as a generator stage
    reads them; returns ``root``."""
    import torch

    from unilip.mllm.model import MLLM
    from unilip.mllm.chat import build_text_tokenizer
    from unilip.tokenizer import UniLIPTokenizer
    from unilip.train.mllm import load_mllm_config

    torch.manual_seed(0)
    cfg = load_mllm_config(None, TINY_MODEL).model
    MLLM.from_config(cfg, build_text_tokenizer(image_seq_length=4)).save_pretrained(root / "mllm")
    UniLIPTokenizer.from_config(cfg).save_pretrained(root / "tokenizer")
    return root


def torchrun_train(what: str, args: list[str], out_dir, log_path, timeout: int = 240) -> dict:
    """``unilip train WHAT ARGS`` under ``torchrun --standalone --nproc_per_node 2`` on the CPU (gloo), one thread per
    rank, offline. Judged on what rank 0 wrote (``OUT/ranks.json``), not on the exit code: torch 2.13's gloo teardown
    can abort or hang after everything is written (gloo's teardown destroying its threads). A run that wrote its ranks.json and final model
    but has not exited 20 s later, or any run past ``timeout``, is killed with its whole process group."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "unilip.cli",
           "train", what, *args, f"loop.output_dir={out_dir}"]
    ranks, final = Path(out_dir) / "ranks.json", Path(out_dir) / "final" / "config.json"  # rank 0's last two writes
    with Path(log_path).open("w") as f:  # a new session, so that a stuck rank can be killed with its launcher
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline, done_at = time.monotonic() + timeout, None
        while proc.poll() is None and time.monotonic() < deadline:
            if done_at is None and ranks.is_file() and final.is_file():
                done_at = time.monotonic()
            if done_at is not None and time.monotonic() - done_at > 20:  # finished, but a rank hangs in teardown
                break
            time.sleep(0.5)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert ranks.is_file(), Path(log_path).read_text()[-3000:]
    sums = json.loads(ranks.read_text())
    assert sums["processes"] == 2 and sums["weight_checksums"][0] == sums["weight_checksums"][1]
    return sums
