#!/usr/bin/env bash
# One point of the generator sweep (issue 12, section 2): train configs/generator/mini_sweep.yaml with the given
# overrides into runs/sweep/NAME, bundle it with the bundled MLLM and tokenizer, and score it on mini GenEval, ImgEdit
# and WISE (2 samples per prompt) into results/sweep/NAME. `python scripts/sweep_table.py` tabulates every point.
#   OMP_NUM_THREADS=1 scripts/sweep_generator.sh deep model.generator.dit_num_layers=10
set -euo pipefail
name=$1; shift
run=runs/sweep/$name; out=results/sweep/$name; assets=src/unilip/assets/mini
unilip train generator --config configs/generator/mini_sweep.yaml "loop.output_dir=$run" "$@"
python -m unilip.bundle --mllm "$assets/mllm" --tokenizer "$assets/tokenizer" --generator "$run/final" --dest "$run-pipeline"
unilip eval geneval-mini --model "$run-pipeline" --samples 2 -o "$out"
unilip eval imgedit-mini --model "$run-pipeline" -o "$out"
unilip eval wise-mini --model "$run-pipeline" --samples 2 -o "$out"
