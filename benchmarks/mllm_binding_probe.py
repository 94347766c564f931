"""Does the frozen mini MLLM's state carry the bindings the generator needs? Linear probes on its hidden states.

The generator reads the MLLM's last hidden states over the prompt (and the queries that follow it). For two-object
prompts in mini GenEval's forms — "a red circle to the left of a blue square", "a red circle and a blue square" — this
fits linear probes (multinomial logistic regression) on the last prompt position (``<img>``, which under causal
attention has read the whole prompt) and on the mean over the prompt's positions, and reports held-out accuracy on:

- ``colour of <shape>``: for each shape, the colour the prompt gives it (or "absent"): colour-shape binding;
- ``left/top shape`` and ``left/top colour``: which object the relation puts on the left (left/right prompts) or on
  top (above/below): binding the relation word to the right object.

Chance is the majority class of the test set. Usage (seconds on 2 cores):

    python benchmarks/mllm_binding_probe.py [--mllm mini] [--n 3000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch


def prompts_and_labels(cfg, n: int, seed: int) -> tuple[list[str], dict[str, list[int]]]:
    """Two-object prompts over the training colour-shape pairs, with the probe targets (-1 = not defined)."""
    from unilip.data.miniworld.language import RELATION_PHRASES, article

    rng = np.random.default_rng(seed)
    held = cfg.heldout_set()
    pairs = [(c, s) for c in cfg.colors for s in cfg.shapes if (c, s) not in held]
    texts, labels = [], {f"colour of {s}": [] for s in cfg.shapes} | {"left/top shape": [], "left/top colour": []}
    while len(texts) < n:
        (c1, s1), (c2, s2) = (pairs[i] for i in rng.choice(len(pairs), 2, replace=False))
        if s1 == s2:  # a colour per shape must be well defined
            continue
        rel = rng.choice([*RELATION_PHRASES, "and"])
        texts.append(f"{article(f'{c1} {s1}')} {RELATION_PHRASES.get(rel, rel)} {article(f'{c2} {s2}')}")
        for s in cfg.shapes:
            colour = c1 if s == s1 else c2 if s == s2 else None
            labels[f"colour of {s}"].append(len(cfg.colors) if colour is None else cfg.colors.index(colour))
        if rel == "and":
            labels["left/top shape"].append(-1)
            labels["left/top colour"].append(-1)
        else:
            shape, colour = (s1, c1) if rel in ("left", "above") else (s2, c2)  # "X left of / above Y": X
            labels["left/top shape"].append(cfg.shapes.index(shape))
            labels["left/top colour"].append(cfg.colors.index(colour))
    return texts, labels


def probe(x_train: torch.Tensor, y_train: torch.Tensor, x_test: torch.Tensor, y_test: torch.Tensor) -> float:
    """Held-out accuracy of a multinomial logistic regression (standardised inputs, light L2, full-batch LBFGS)."""
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    classes = int(max(y_train.max(), y_test.max())) + 1
    linear = torch.nn.Linear(x_train.shape[1], classes)
    opt = torch.optim.LBFGS(linear.parameters(), max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(linear(x_train), y_train) + 1e-3 * linear.weight.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float((linear(x_test).argmax(1) == y_test).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mllm", default="mini")
    parser.add_argument("--n", type=int, default=3000, help="prompts (4/5 to fit, 1/5 to test)")
    parser.add_argument("--json")
    args = parser.parse_args()
    from unilip.config import get_preset
    from unilip.generation.conditioner import Conditioner
    from unilip.pretrained import resolve_model
    from unilip.mllm.model import MLLM

    torch.manual_seed(0)
    cfg = get_preset("mini").miniworld
    conditioner = Conditioner(MLLM.from_pretrained(resolve_model(args.mllm, "mllm")), num_queries=1)
    texts, labels = prompts_and_labels(cfg, args.n, seed=0)
    last, mean = [], []
    with torch.no_grad():
        for i in range(0, len(texts), 256):
            prefix = conditioner.prefix(texts[i : i + 256])
            m = prefix.mask[..., None].float()
            last.append(prefix.hidden[:, -1])
            mean.append((prefix.hidden * m).sum(1) / m.sum(1))
    features = {"last position": torch.cat(last), "mean over positions": torch.cat(mean)}
    cut = len(texts) * 4 // 5
    results = {}
    print(f"{len(texts)} prompts, {cut} to fit, {len(texts) - cut} to test; hidden size {features['last position'].shape[1]}\n")
    print("| target | chance | " + " | ".join(features) + " |")
    print("|---|---|" + "---|" * len(features))
    for target, ys in labels.items():
        y = torch.tensor(ys)
        train, test = torch.arange(cut)[y[:cut] >= 0], torch.arange(cut, len(y))[y[cut:] >= 0]
        chance = float(torch.bincount(y[test]).max()) / len(test)
        accs = {name: probe(x[train], y[train], x[test], y[test]) for name, x in features.items()}
        results[target] = {"chance": chance, **accs}
        print(f"| {target} | {chance:.2f} | " + " | ".join(f"{a:.2f}" for a in accs.values()) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
