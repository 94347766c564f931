#!/usr/bin/env bash
# The recipe of unilip's embedded default (the weights in src/unilip/assets/mini): every command, in order.
# About an hour on 2 CPU cores (7.5 + 38 + 7 + 6.5 min, measured). Run from the repository root with the package installed.
set -euo pipefail
unilip train mllm --config configs/mllm/mini_vision.yaml           # ViT semantics: patch colour/shape/size
unilip train mllm --config configs/mllm/mini_instruct.yaml         # projector + LM: questions, captions, knowledge
unilip train tokenizer --config configs/tokenizer/mini_stage1.yaml # UniLIP stage 1 on the MLLM's encoder
unilip train tokenizer --config configs/tokenizer/mini_stage2.yaml # UniLIP stage 2: + encoder at 0.1x, self-distillation
python -m unilip.bundle --mllm runs/mini-mllm-instruct/final --tokenizer runs/mini-tokenizer-stage2/final
