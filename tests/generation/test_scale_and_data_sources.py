"""Real-scale pieces without real weights: shipped stage configs, query shapes on `meta`, manifest data, autoencoders."""

import glob
import json

import numpy as np
import pytest
import torch
from PIL import Image

from unilip.errors import ConfigError
from unilip.train.generator_data import GenerationData, GenerationMix
from unilip.generation.vae_baseline import (
    DiffusersAutoencoder,
    PixelAutoencoder,
    load_autoencoder,
)
from unilip.train.generator import load_generator_config


@pytest.mark.parametrize("path", sorted(glob.glob("configs/generator/*.yaml")))
def test_shipped_generator_configs_load(path):
    cfg = load_generator_config(path)
    if "stage1" in path:  # official stage 1: the pretrained DiT frozen, in SANA's DC-AE latent
        assert "dit" not in cfg.stage.trainable and cfg.autoencoder and cfg.mix.edit == 0
    if "stage2" in path or "stage3" in path:
        assert "dit" in cfg.stage.trainable and cfg.stage.init and cfg.autoencoder is None and cfg.mix.edit > 0


@pytest.mark.parametrize(("name", "dim"), [("1b", 896), ("2b", 1536)])
def test_queries_on_meta(name, dim):
    from unilip.config import get_preset
    from unilip.generation.conditioner import Conditioner
    from unilip.mllm.model import MLLM
    from unilip.mllm.chat import build_text_tokenizer

    cfg = get_preset(name)
    with torch.device("meta"):
        conditioner = Conditioner(MLLM.from_config(cfg, build_text_tokenizer(image_seq_length=256)), cfg.generator.num_queries)
    assert conditioner.queries.shape == (1, 256, dim)


def _png(path, color):
    Image.new("RGB", (80, 60), color).save(path)
    return path.name


def test_manifest_data_reads_pairs_and_edits_and_skips_bad_images(tmp_path):
    from unilip.config import get_preset

    names = [_png(tmp_path / f"{i}.png", (40 * i, 0, 0)) for i in range(4)]
    (tmp_path / "bad.png").write_bytes(b"not an image")
    rows = [{"image": n, "prompt": f"red {i}"} for i, n in enumerate(names)] + [{"image": "bad.png", "prompt": "bad"}]
    (tmp_path / "t2i.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "edit.jsonl").write_text(json.dumps({"source": names[0], "image": names[1], "prompt": "make it redder"}) + "\n")
    mix = GenerationMix(train=str(tmp_path / "t2i.jsonl"), edit_train=str(tmp_path / "edit.jsonl"), edit=0.5, cfg_dropout=0.0)
    data = GenerationData(get_preset("mini").miniworld, mix, image_size=32)
    items = [data.make(p) for p in range(40)]
    edits = [it for it in items if it["source"] is not None]
    assert len(edits) == 20 and all(it["prompt"] == "make it redder" for it in edits)
    gens = [it for it in items if it["source"] is None]
    assert all(it["image"].shape == (3, 32, 32) for it in gens) and {it["prompt"] for it in gens} == {f"red {i}" for i in range(4)}
    assert data.manifests["caption"].skipped.count >= 1  # the corrupt image was met and skipped
    assert torch.equal(data.make(13)["image"], items[13]["image"])  # positions are reproducible
    with pytest.raises(ConfigError, match="edit_train"):
        GenerationMix(train=str(tmp_path / "t2i.jsonl"), edit=0.3).validate()
    (tmp_path / "broken.jsonl").write_text('{"image": "0.png"}\n')
    with pytest.raises(ConfigError, match="prompt"):
        GenerationData(get_preset("mini").miniworld, GenerationMix(train=str(tmp_path / "broken.jsonl"), edit=0.0))


def test_autoencoders_load_and_keep_the_latent_shape(tmp_path):
    torch.manual_seed(0)
    ae = PixelAutoencoder(32, 32, 2, widths=(8, 8, 16, 16, 32))
    x = torch.rand(2, 3, 32, 32)
    z = ae.encode(x)
    assert z.shape == (2, 32, 2, 2) and ae.decode(z, clamp=True).shape == (2, 3, 32, 32)
    ae.save_pretrained(tmp_path / "pixel")
    again = load_autoencoder(str(tmp_path / "pixel"))
    assert isinstance(again, PixelAutoencoder) and torch.equal(again.encode(x), z)
    from diffusers import AutoencoderDC

    AutoencoderDC(latent_channels=4, attention_head_dim=8, encoder_block_types=("ResBlock", "ResBlock"),
                  decoder_block_types=("ResBlock", "ResBlock"), encoder_block_out_channels=(8, 16),
                  decoder_block_out_channels=(8, 16), encoder_layers_per_block=(1, 1), decoder_layers_per_block=(1, 1),
                  encoder_qkv_multiscales=((), ()), decoder_qkv_multiscales=((), ())).save_pretrained(tmp_path / "sana" / "vae")
    dc = load_autoencoder(str(tmp_path / "sana"))  # SANA's layout: the DC-AE in vae/
    assert isinstance(dc, DiffusersAutoencoder) and dc.encode(x).shape == (2, 4, 16, 16)
    with torch.no_grad():
        assert float(dc.decode(dc.encode(x), clamp=True).min()) >= 0 and np.isfinite(float(dc.decode(dc.encode(x)).sum()))
