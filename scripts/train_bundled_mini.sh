#!/usr/bin/env bash
# The recipe of unilip's embedded default (the weights in src/unilip/assets/mini): every command, in order.
# On 2 CPU cores (measured): MLLM 7.5 + 38 min, tokenizer 7 + 6.5 + 17 min, generator 84 + 17 + ~25 + 18 min
# (mini_finetune: 58 min measured on cores shared with another job) + 50 min (mini_relation, 4 min of it the
# frozen pool) + 100 min (mini_relation2, cores shared with another job; ~60 min alone): about 6 hours.
# Run from the repository root with the package installed.
set -euo pipefail
unilip train mllm --config configs/mllm/mini_vision.yaml           # ViT semantics: patch colour/shape/size
unilip train mllm --config configs/mllm/mini_instruct.yaml         # projector + LM: questions, captions, knowledge
unilip train tokenizer --config configs/tokenizer/mini_stage1.yaml # UniLIP stage 1 on the MLLM's encoder
unilip train tokenizer --config configs/tokenizer/mini_stage2.yaml # UniLIP stage 2: + encoder at 0.1x, self-distillation
unilip train tokenizer --config configs/tokenizer/mini_stage3.yaml # decoder only: exact reconstructions, latent unchanged
unilip latent-scale --tokenizer runs/mini-tokenizer-stage3/final   # -> model.generator.latent_scale in the next config
unilip train generator --config configs/generator/mini.yaml        # queries + connector + DiT, dual conditions
unilip train generator --config configs/generator/mini_edit.yaml   # editing-heavy fine-tune (80 % edits)
unilip train generator --config configs/generator/mini_finetune.yaml   # framed shape-only captions, 60 % edits
unilip train generator --config configs/generator/mini_finetune2.yaml  # 2,000 more steps, 65 % edits
unilip train generator --config configs/generator/mini_relation.yaml   # frozen pool, batch 256, relation captions
unilip train generator --config configs/generator/mini_relation2.yaml  # 2,400 more steps, pool 90,000, relation 0.3
python -m unilip.bundle --mllm runs/mini-mllm-instruct/final --tokenizer runs/mini-tokenizer-stage3/final \
    --generator runs/mini-generator-relation2/final
