"""The layering ARCHITECTURE.md documents, checked on the package's own imports (read from source, not imported)."""

import pytest

import import_graph as graph


def test_the_package_has_no_import_circle():
    assert graph.circles(graph.imports()) == []


def test_no_import_points_up_the_documented_layers():
    assert graph.upward(graph.imports(), graph.documented_layers()) == []


def test_every_module_is_in_a_documented_layer():
    layers = graph.documented_layers()
    assert [m for m in graph.imports() if graph.layer_of(m, layers) is None] == []


@pytest.mark.parametrize("edges, expected", [
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
    ({"a": {"b"}, "b": set()}, []),
])
def test_the_circle_finder_finds_circles(edges, expected):
    assert graph.circles(edges) == expected


def test_the_layer_check_catches_an_upward_import():
    layers = graph.documented_layers("```layers\n0. low: p.low\n1. high: p.high\n```\n")
    edges = {"p.low.x": {"p.high.y"}, "p.high.y": {"p.low.z"}, "p.low.z": set()}
    assert graph.upward(edges, layers) == [("p.low.x", "p.high.y")]
    assert graph.layer_of("p.highway", layers) is None  # a prefix names a package, not a string start
