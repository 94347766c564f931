"""UniLIPGenerator: conditions for prompts and edits, the ablation modes, frozen parts, latents and their scale."""

import pytest
import torch
from tiny import TINY_MODEL

from unilip.errors import UniLIPError
from unilip.generation.model import UniLIPGenerator, measure_latent_scale

TINY_DIT = ["model.generator.num_queries=3", "model.generator.dit_num_layers=1", "model.generator.dit_num_heads=2",
            "model.generator.dit_cross_heads=2", "model.generator.dit_cross_head_dim=16",
            "model.generator.caption_channels=24", "model.generator.latent_scale=2.0"]


@pytest.fixture(scope="module")
def parts():
    from unilip.mllm.model import MLLM
    from unilip.mllm.chat import build_text_tokenizer
    from unilip.tokenizer import UniLIPTokenizer
    from unilip.train.mllm import load_mllm_config

    torch.manual_seed(0)
    cfg = load_mllm_config(None, [*TINY_MODEL, *TINY_DIT]).model
    return cfg, MLLM.from_config(cfg, build_text_tokenizer(image_seq_length=4)), UniLIPTokenizer.from_config(cfg)


def _images(n):
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(n))


def test_generate_and_edit_conditions_and_what_trains(parts):
    gen = UniLIPGenerator(*parts)
    c, mask = gen.conditions(["a red circle", "two blue squares"])
    assert c.shape[:2] == mask.shape and c.shape[2] == 24
    ce, me = gen.conditions(["remove the square", "make the circle red"], _images(2))
    assert ce.shape[1] > c.shape[1]  # the source image's tokens are in the sequence
    loss = gen.loss(_images(2), ["remove the square", "make the circle red"], _images(2))
    assert torch.isfinite(loss)
    loss.backward()
    trained = {n.split(".")[0] for n, p in gen.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert trained == {"conditioner", "connector", "dit"}
    assert all(p.grad is None for p in gen.tokenizer.parameters()) and all(p.grad is None for p in gen.conditioner.mllm.parameters())
    assert {n for n, p in gen.conditioner.named_parameters() if p.grad is not None} == {"queries"}


def test_the_ablation_modes_mask_what_they_drop(parts):
    torch.manual_seed(0)
    dual = UniLIPGenerator(*parts)
    outs = {}
    for mode in ("dual", "queries", "hidden"):
        gen = UniLIPGenerator(*parts, condition_mode=mode)
        gen.load_state_dict(dual.state_dict())
        with torch.no_grad():
            outs[mode] = gen.conditions(["a red circle"])
    (c_q, m_q), (c_h, m_h), (_, m_d) = outs["queries"], outs["hidden"], outs["dual"]
    assert m_q.sum() == 3 and m_q[:, -3:].all() and (c_q[:, :-3] == 0).all()
    assert m_h.sum() == m_d.sum() - 3 and (c_h[:, -3:] == 0).all()
    with pytest.raises(UniLIPError, match="condition_mode"):
        UniLIPGenerator(*parts, condition_mode="text")


def test_latents_scale_and_decode_back(parts):
    gen = UniLIPGenerator(*parts)
    x = _images(4)
    z = gen.latents(x)
    torch.testing.assert_close(z, gen.tokenizer.encode(x) * 2.0)
    torch.testing.assert_close(gen.images(z), gen.tokenizer.decode(gen.tokenizer.encode(x), clamp=True))
    s = measure_latent_scale(gen.tokenizer, x)
    assert abs(float((gen.tokenizer.encode(x) * s).std()) - 1) < 1e-4


def test_generate_and_edit_honour_their_arguments(parts):
    from unilip.pipeline import UniLIPPipeline

    pipe = UniLIPPipeline(UniLIPGenerator(*parts), progress=False)

    def generate(prompts, image=None, **kw):
        return pipe(prompts, image=image, output_type="pt", **kw).images

    def run(seed, **kw):
        return generate(["a red circle", "a blue square"], num_inference_steps=2,
                        generator=torch.Generator().manual_seed(seed), **kw)

    a, b, c = run(0), run(0), run(1)
    assert a.shape == (2, 3, 32, 32) and 0 <= a.min() and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(run(0, negative_prompt="a green triangle"), a)
    assert not torch.equal(run(0, guidance_scale=1.0), a)
    many = generate(["a red circle"], num_images_per_prompt=3, num_inference_steps=2, generator=torch.Generator().manual_seed(0))
    assert many.shape[0] == 3 and not torch.equal(many[0], many[1])
    edits = generate(["remove the square"], _images(1), num_inference_steps=2, scheduler="dpm",
                     generator=torch.Generator().manual_seed(0))
    assert edits.shape == (1, 3, 32, 32)
    with pytest.raises(UniLIPError, match="2 source images for 1 prompts"):
        generate(["remove the square"], _images(2), num_inference_steps=1)


@pytest.mark.parametrize("mode", ["dual", "queries", "hidden"])
def test_conditions_in_length_trimmed_chunks_equal_one_pass(parts, mode):
    """Chunked conditions (each chunk trimmed to its longest prompt, padded back) are the one-pass conditions."""
    torch.manual_seed(0)
    gen = UniLIPGenerator(*parts, condition_mode=mode)
    prompts = ["a red circle", "two blue squares and a small green triangle to the left of a cross", "a cross",
               "an image of three small yellow circles", "a square"]
    with torch.no_grad():
        prefix = gen.prefix(prompts)
        whole, whole_mask = gen.conditions_of(prefix, chunk=len(prompts))
        chunked, chunked_mask = gen.conditions_of(prefix, chunk=2)
        short = prefix.narrow(2, 1)
    assert short.hidden.shape[1] < prefix.hidden.shape[1] and short.mask.all()  # "a cross" alone: no padding left
    assert torch.equal(whole_mask, chunked_mask)
    torch.testing.assert_close(chunked, whole, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("chunk", [3, 8])
def test_latent_scale_pooled_over_chunks_is_that_of_one_batch(parts, chunk):
    from PIL import Image

    from unilip.generation.model import latent_scale_of_images

    tok = parts[2].eval()
    x = _images(8)
    x[:4] *= 0.5  # chunks with different means: averaging their scales (or variances) would be off
    pixels = (x * 255).round().to(torch.uint8)  # what the PIL images hold, exactly
    pil = [Image.fromarray(im.permute(1, 2, 0).numpy()) for im in pixels]
    one_batch = measure_latent_scale(tok, pixels.float() / 255)
    assert latent_scale_of_images(tok, pil, 32, chunk=chunk) == pytest.approx(one_batch, rel=1e-5)
    with pytest.raises(UniLIPError, match="no images"):
        latent_scale_of_images(tok, [], 32)
