"""One config.json schema for our components and one index for a pipeline directory (hub.component_header,
hub.write_model_index): what is written, that it is checked when read, and that older folders still load."""

import json

import pytest

from unilip.errors import UniLIPError
from unilip.hub import PIPELINE_INDEX, check_component_config, component_header, read_model_index


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    from unilip.pipeline import UniLIPPipeline

    out = tmp_path_factory.mktemp("pipe") / "p"
    UniLIPPipeline.from_pretrained("mini").save_pretrained(out)
    return out


def test_a_saved_pipeline_has_an_index_and_headed_configs(saved):
    index = json.loads((saved / "model_index.json").read_text())
    assert index["_class_name"] == "UniLIPPipeline" and {c: index[c] for c in PIPELINE_INDEX} == PIPELINE_INDEX
    for component, cls in (("tokenizer", "UniLIPTokenizer"), ("generator", "UniLIPGenerator")):
        config = json.loads((saved / component / "config.json").read_text())
        assert list(config)[:3] == ["_class_name", "_unilip_version", "format_version"]
        assert config["_class_name"] == cls
    assert json.loads((saved / "mllm" / "config.json").read_text())["model_type"] == "internvl"  # transformers' own


def test_an_index_naming_other_classes_is_refused(saved, tmp_path):
    import shutil

    from unilip.pipeline import UniLIPPipeline

    pipe = tmp_path / "p"
    shutil.copytree(saved, pipe)
    index = json.loads((pipe / "model_index.json").read_text())
    index["generator"] = ["diffusers", "SanaPipeline"]
    (pipe / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(UniLIPError, match="generator: \\['diffusers', 'SanaPipeline'\\]"):
        UniLIPPipeline.from_pretrained(pipe)
    (pipe / "model_index.json").unlink()  # a folder from before the index: still loads
    assert read_model_index(pipe) is None
    UniLIPPipeline.from_pretrained(pipe)


def test_a_generator_folder_with_the_older_header_still_loads(saved, tmp_path):
    import shutil

    from unilip.pipeline import UniLIPPipeline

    pipe = tmp_path / "p"
    shutil.copytree(saved, pipe)
    path = pipe / "generator" / "config.json"
    config = {k: v for k, v in json.loads(path.read_text()).items() if k not in component_header("x")}
    path.write_text(json.dumps({"format": "unilip-generator", **config}))
    UniLIPPipeline.from_pretrained(pipe)
    path.write_text(json.dumps({"format": "something-else", **config}))
    with pytest.raises(UniLIPError, match="not a UniLIPGenerator config"):
        UniLIPPipeline.from_pretrained(pipe)


def test_the_header_check():
    check_component_config(component_header("A"), "A", "x")
    with pytest.raises(UniLIPError, match="x is not a A config"):
        check_component_config(component_header("B"), "A", "x")
    with pytest.raises(UniLIPError, match="format_version 2"):
        check_component_config({**component_header("A"), "format_version": 2}, "A", "x")
