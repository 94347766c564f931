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
