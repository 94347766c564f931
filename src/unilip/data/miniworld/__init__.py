"""The mini world: procedural scenes of coloured shapes with captions, questions, edits and a detector.

It is unilip's embedded default: every part of UniLIP trains and is scored on it on a CPU. Names are imported
lazily, so ``from unilip.data.miniworld.config import MiniWorldConfig`` (used by every config) stays cheap.
"""

import importlib

_EXPORTS = {
    "config": ("BACKGROUNDS", "PALETTE", "SHAPES", "MiniWorldConfig"),
    "scene": ("SPLIT_SEED_BASE", "Scene", "SceneObject", "sample_scene", "sample_split", "scene_seed"),
    "renderer": ("render", "render_pil"),
    "language": ("caption", "refer", "relation"),
    "questions": ("QUESTION_TYPES", "Question", "answer_space", "question_with_answer"),
    "edits": ("EDIT_TYPES", "REGIONS", "Edit", "make_edit", "region_of"),
    "detector": ("detect", "detect_objects", "detector_accuracy", "match_objects", "perturb"),
    "dataset": ("TASKS", "make_records", "write_dataset", "MiniWorldDataset"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
