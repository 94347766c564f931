"""Config machinery: nested dataclasses <-> YAML files and ``a.b.c=value`` overrides, strictly checked.

The config dataclasses and the presets live in :mod:`unilip.config`; this module only knows dataclasses. A config is built in one direction only: preset (or the dataclass defaults) -> YAML file -> ``key=value`` overrides
-> :func:`from_dict`, which checks every key and type strictly and then runs each dataclass's ``validate()``. Every
mistake is a :class:`~unilip.errors.ConfigError` whose message starts with the full dotted key, e.g.
``mllm.vision.hidden_size: ...``. This module imports no torch: building a config is cheap.

Example::

    cfg = load_config(UniLIPConfig, "configs/1b.yaml", ["generator.cfg_scale=3.0"])
    save_config(cfg, "runs/x/config.yaml")
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from unilip.checks import short
from unilip.errors import ConfigError

T = TypeVar("T")
_INT_LIMIT = 2**63

#################################################################################
#                      YAML with YAML 1.2 scalars                               #
#################################################################################

# PyYAML follows YAML 1.1: `yes`/`no`/`on`/`off` load as booleans (a colour named "no" would become False) and `1e-6`
# (no dot) loads as a *string*. Configs use YAML 1.2 rules instead: only true/false are booleans, and 1e-6 is a float.
_BOOL_TAG, _FLOAT_TAG = "tag:yaml.org,2002:bool", "tag:yaml.org,2002:float"
_BOOL_RE = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_FLOAT_RE = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)[eE][-+]?[0-9]+
    |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.VERBOSE,
)


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans and floats."""


_Loader.yaml_implicit_resolvers = {
    ch: [r for r in resolvers if r[0] not in (_BOOL_TAG, _FLOAT_TAG)]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_BOOL_TAG, _BOOL_RE, list("tTfF"))
_Loader.add_implicit_resolver(_FLOAT_TAG, _FLOAT_RE, list("-+0123456789."))


class _Dumper(yaml.SafeDumper):
    """SafeDumper that also quotes strings a YAML 1.2 reader would take for floats (e.g. "1e5")."""


_Dumper.add_implicit_resolver(_FLOAT_TAG, _FLOAT_RE, list("-+0123456789."))


def _represent_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    # Lists of scalars (or of such lists) on one line, `[128, 256, 512]`; mappings always in block style.
    flow = not any(isinstance(v, dict) for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _represent_list)


#: A config file larger than this is refused unread (the biggest shipped config is ~3 KB).
MAX_CONFIG_BYTES = 1 << 20
#: Nodes of a config once its YAML aliases are expanded: a "billion laughs" file of 1 KB expands to 10^9.
MAX_CONFIG_NODES = 100_000


def _yaml_load(text: str) -> Any:
    try:
        data = yaml.load(text, Loader=_Loader)
        _check_expanded_size(data)
    except RecursionError:
        raise ConfigError("the YAML is nested too deeply (a config has a few levels)") from None
    except ConfigError:
        raise
    except ValueError as err:  # e.g. an integer of 100,000 digits (Python's int conversion limit)
        raise ConfigError(f"a value cannot be read: {str(err)[:200]}") from None
    return data


def _check_expanded_size(data: Any) -> None:
    """Refuse YAML whose aliases expand past MAX_CONFIG_NODES, or refer to themselves, before anything walks it.

    PyYAML builds an alias as a shared reference (cheap), but every consumer that copies or checks the data (merging,
    :func:`from_dict`) would expand it; so the expanded size is counted on the shared graph, each object once."""
    sizes: dict[int, int] = {}
    open_: set[int] = set()

    def size(obj: Any) -> int:
        if not isinstance(obj, (list, dict)):
            return 1
        key = id(obj)
        if key in sizes:
            return sizes[key]
        if key in open_:
            raise ConfigError("the YAML refers to itself through an alias (a recursive anchor)")
        open_.add(key)
        children = [*obj.keys(), *obj.values()] if isinstance(obj, dict) else obj
        total = 1
        for child in children:
            total += size(child)
            if total > MAX_CONFIG_NODES:
                raise ConfigError(f"the YAML expands to more than {MAX_CONFIG_NODES} values (anchors and aliases "
                                  "repeated in a \"billion laughs\" pattern?); a config is a few hundred")
        open_.discard(key)
        sizes[key] = total
        return total

    size(data)


#################################################################################
#                    Plain data <-> dataclasses, strictly                       #
#################################################################################


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _init_fields(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.init]


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key


def _type_name(tp: Any) -> str:
    """How a field type reads in an error message: 'int', 'list of int', 'str | None', "'a' | 'b'"."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is type(None):
        return "null"
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin is Literal:
        return " | ".join(repr(a) for a in args)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return f"list of ({_type_name(args[0])})"
    if origin is tuple:
        return f"list of {len(args)}: [{', '.join(_type_name(a) for a in args)}]"
    if origin is list:
        return f"list of ({_type_name(args[0])})"
    if origin is dict:
        return f"mapping of {_type_name(args[0])} to ({_type_name(args[1])})"
    if dataclasses.is_dataclass(tp):
        return f"mapping ({tp.__name__})"
    return getattr(tp, "__name__", str(tp))


def _wrong_type(key: str, tp: Any, value: Any) -> ConfigError:
    return ConfigError(f"{key}: expected {_type_name(tp)}, got {short(value)} ({type(value).__name__})")


def _convert(tp: Any, value: Any, key: str) -> Any:
    """Check ``value`` against the field type ``tp`` and convert it (lists -> tuples, ints -> floats, ...)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if tp is type(None):
        if value is None:
            return None
        raise _wrong_type(key, tp, value)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        members = [a for a in args if a is not type(None)]
        if len(members) == 1:  # `X | None`: X's own error is the precise one
            return _convert(members[0], value, key)
        for member in members:
            try:
                return _convert(member, value, key)
            except ConfigError:
                pass
        raise _wrong_type(key, tp, value)
    if origin is Literal:
        # `type(a) is type(value)` so that True does not pass for 1 (True == 1 in Python).
        if any(type(a) is type(value) and a == value for a in args):
            return value
        raise ConfigError(f"{key}: {short(value)} is not allowed; allowed: {list(args)}")
    if tp is bool:
        if isinstance(value, bool):  # only real booleans: not 0/1, not "yes"
            return value
        raise _wrong_type(key, tp, value)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            if not -_INT_LIMIT <= value < _INT_LIMIT:  # beyond int64 no tensor, seed or size can hold it
                raise ConfigError(f"{key}: {short(value, 40)} is out of range (|value| < 2^63)")
            return value
        raise _wrong_type(key, tp, value)
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                number = float(value)
            except OverflowError:
                number = math.inf
            if not math.isfinite(number):  # NaN / inf can only produce NaN weights or black images
                raise ConfigError(f"{key}: must be a finite number (got {short(value, 40)})")
            return number
        raise _wrong_type(key, tp, value)
    if tp is str:
        if isinstance(value, str):
            return value
        raise _wrong_type(key, tp, value)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise _wrong_type(key, tp, value)
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):  # fixed length: tuple[int, str]
            if len(value) != len(args):
                raise ConfigError(f"{key}: expected {_type_name(tp)}, got {len(value)} items: {short(value)}")
            return tuple(_convert(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        items = [_convert(args[0], v, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, Mapping):
            raise _wrong_type(key, tp, value)
        key_tp, value_tp = args
        return {
            _convert(key_tp, k, f"{key} (key {short(k, 60)})"): _convert(value_tp, v, _join(key, str(k)[:60]))
            for k, v in value.items()
        }
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key)
    raise TypeError(f"{key}: unilip.config does not support fields of type {tp!r}")


def _run_validate(obj: Any, prefix: str) -> None:
    """Call ``obj.validate()`` if it has one; prefix its error with where ``obj`` sits in the config."""
    validate = getattr(obj, "validate", None)
    if not callable(validate):
        return
    try:
        validate()
    except ConfigError as err:
        raise ConfigError(_join(prefix, str(err))) from None


def from_dict(cls: type[T], data: Mapping[str, Any], prefix: str = "") -> T:
    """Build the (nested) dataclass ``cls`` from plain data, strictly.

    Args:
        cls: a dataclass whose fields are typed with ``from __future__ import annotations`` style hints.
        data: a mapping from field names to values (YAML data). Missing keys keep the dataclass default.
        prefix: the dotted path of ``cls`` inside the whole config, used in error messages (e.g. ``"mllm.vision"``).

    Raises:
        ConfigError: on an unknown key (the message lists the allowed keys), a value of the wrong type (the message
            names the key, the expected type and the value), or a failed ``validate()`` of any dataclass on the way.
    """
    if not isinstance(data, Mapping):
        raise _wrong_type(prefix or "<config>", cls, data)
    hints, allowed = _hints(cls), _init_fields(cls)
    for name in data:
        if name not in allowed:
            import difflib

            shown = name if isinstance(name, str) and len(name) <= 80 else short(name, 80)
            close = difflib.get_close_matches(str(name)[:80], allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"{_join(prefix, shown)}: unknown key{hint}; allowed keys in {prefix or 'the top level'}: "
                f"{', '.join(allowed)}"
            )
    kwargs = {name: _convert(hints[name], value, _join(prefix, name)) for name, value in data.items()}
    obj = cls(**kwargs)
    _run_validate(obj, prefix)
    return obj


def validate_config(obj: Any, prefix: str = "") -> None:
    """Run ``validate()`` on ``obj`` and on every dataclass nested in it (innermost first), with dotted-key errors."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            validate_config(value, _join(prefix, f.name))
    _run_validate(obj, prefix)


def to_dict(obj: Any) -> Any:
    """Plain, YAML-safe data from a (nested) dataclass: tuples become lists, dataclasses become dicts."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, Mapping):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def to_yaml(obj: Any, comment: str | None = None) -> str:
    """YAML text of a config (keys in field order), optionally headed by ``comment`` as ``#`` lines."""
    text = yaml.dump(to_dict(obj), Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=120)
    if comment:
        text = "".join(f"# {line}".rstrip() + "\n" for line in comment.splitlines()) + text
    return text


#################################################################################
#                       Files, overrides, presets                               #
#################################################################################


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated with ``override``: mappings merge key by key, recursively; any other value replaces.

    Neither input is modified. (:func:`load_config` merges by field type instead, so ``dict`` fields replace.)
    """
    merged = dict(base)
    for key, value in override.items():
        if isinstance(merged.get(key), Mapping) and isinstance(value, Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def merge_fields(cls: type, base: Mapping[str, Any], override: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Like :func:`deep_merge`, but only nested *dataclass* sections merge: a ``dict`` field (``miniworld.sizes``)
    is replaced as a whole, so a file or an override can also drop entries.

    A section that is not a mapping (``optim: 5`` in a file) is an error here, even when the override replaces
    its keys: it would otherwise vanish under ``optim.lr=...`` unseen."""
    merged = dict(base)
    hints = _hints(cls) if dataclasses.is_dataclass(cls) else {}
    for key, value in override.items():
        tp = hints.get(key)
        if dataclasses.is_dataclass(tp) and isinstance(value, Mapping):
            current = merged.get(key)
            if current is not None and not isinstance(current, Mapping):
                raise _wrong_type(_join(prefix, str(key)), tp, current)
            merged[key] = merge_fields(tp, current or {}, value, _join(prefix, str(key)))
        else:
            merged[key] = value
    return merged


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """Nested data from ``key=value`` items, e.g. ``["mllm.vision.num_layers=2", "miniworld.shapes=[circle, square]"]``.

    Each value is read as YAML (``3``, ``0.5``, ``true``, ``null``, ``[a, b]``, ``{small: 0.2}``); a later item wins
    over an earlier one.

    Raises:
        ConfigError: on an item that is not ``dotted.key=value``, has an empty value, or whose value is invalid YAML.
    """
    result: dict[str, Any] = {}
    for item in items:
        key, sep, text = str(item).partition("=")
        key = key.strip()
        parts = key.split(".")
        if not sep or not key or not all(p.strip() == p and p for p in parts):
            raise ConfigError(f"override {short(item)}: expected the form dotted.key=value, e.g. mllm.vision.num_layers=2")
        if not text.strip():
            raise ConfigError(f"override {short(item)}: the value is empty; write {key}=null for None or {key}='' for ''")
        try:
            value = _yaml_load(text)
        except yaml.YAMLError as err:
            raise ConfigError(f"override {short(item)}: the value is not valid YAML ({_yaml_problem(err)})") from None
        node = result
        for i, part in enumerate(parts[:-1]):  # `a=5 a.b=1` (or the reverse) is a contradiction, not a merge
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {short(item)}: {'.'.join(parts[:i + 1])} was set to a value by an earlier "
                                  "override, so it has no keys")
        if isinstance(node.get(parts[-1]), dict) and node[parts[-1]] and not isinstance(value, Mapping):
            raise ConfigError(f"override {short(item)}: {key} is a section (set by an earlier override); give its keys")
        for part in reversed(parts):
            value = {part: value}
        result = deep_merge(result, value)
    return result


def _yaml_problem(err: yaml.YAMLError) -> str:
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err)
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark is not None else problem


def read_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The top-level mapping of a YAML config file (an empty file is ``{}``); ConfigError naming the file otherwise."""
    import stat

    path = Path(path)
    try:
        info = path.stat()  # before opening: a FIFO or a device would block or never end
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config file ({err.strerror or err})") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{path}: not a regular file (a config is a YAML file)")
    if info.st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: {info.st_size} bytes; a config file is at most {MAX_CONFIG_BYTES} bytes")
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes; a config file is at most that")
        text = raw.decode("utf-8")
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config file ({err.strerror or err})") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start})") from None
    return parse_yaml_mapping(text, str(path))


def parse_yaml_mapping(text: str, where: str = "<text>") -> dict[str, Any]:
    """The top-level mapping of a config's YAML text (empty text is ``{}``); ConfigError naming ``where`` otherwise.

    Bounded: aliases may not expand past MAX_CONFIG_NODES values nor refer to themselves, nesting is limited."""
    try:
        data = _yaml_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{where}: invalid YAML at {_yaml_problem(err)}") from None
    except ConfigError as err:
        raise ConfigError(f"{where}: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: the top level must be a mapping of config keys, got {type(data).__name__}")
    return data


# The preset registry load_config uses for a class when no `presets` are passed (UniLIPConfig -> PRESETS).
_DEFAULT_PRESETS: dict[type, Mapping[str, Callable[[], Any]]] = {}


def load_config(
    cls: type[T],
    path: str | os.PathLike[str] | None = None,
    overrides: Iterable[str] | Mapping[str, Any] = (),
    preset: str | None = None,
    presets: Mapping[str, Callable[[], T]] | None = None,
) -> T:
    """Build a config: preset (or ``cls()``) -> YAML file -> overrides -> :func:`from_dict`.

    Args:
        cls: the config dataclass, e.g. :class:`UniLIPConfig`.
        path: a YAML file. A top-level ``preset: NAME`` key in it means "start from that preset, then apply this file".
        overrides: ``dotted.key=value`` strings (see :func:`parse_overrides`) or already-nested data. A top-level
            ``preset=NAME`` chooses the starting preset like the file key does.
        preset: the preset to start from. It must agree with the file's and the overrides' ``preset`` if they name one.
        presets: name -> factory; defaults to the registry for ``cls`` (``PRESETS`` for :class:`UniLIPConfig`).

    Raises:
        ConfigError: for a missing or invalid file, an unknown or conflicting preset, or any invalid key or value.
    """
    presets = presets if presets is not None else _DEFAULT_PRESETS.get(cls)
    file_data = read_yaml(path) if path is not None else {}
    override_data = dict(overrides) if isinstance(overrides, Mapping) else parse_overrides(overrides)

    chosen: dict[str, Any] = {}  # where each preset name came from -> name
    if preset is not None:
        chosen["the preset argument"] = preset
    if presets is not None:
        if "preset" in file_data:
            chosen[f"{path}"] = file_data["preset"]
        if "preset" in override_data:
            chosen["the overrides"] = override_data["preset"]
    for where, name in chosen.items():
        if not isinstance(name, str):
            raise ConfigError(f"preset: expected a preset name (text) from {where}, got {short(name, 60)}")
    names = set(chosen.values())
    if len(names) > 1:
        raise ConfigError("preset: conflicting presets: " + ", ".join(f"{short(v, 60)} from {k}" for k, v in chosen.items()))

    if names:
        name = names.pop()
        if presets is None:
            raise ConfigError(f"preset: {cls.__name__} has no presets (asked for {name!r})")
        if not isinstance(name, str) or name not in presets:
            raise ConfigError(f"preset: unknown preset {short(name, 60)}; known presets: {', '.join(presets)}")
        data = to_dict(presets[name]())
    else:
        data = to_dict(cls())
    data = merge_fields(cls, merge_fields(cls, data, file_data), override_data)
    if presets is not None and "preset" not in _init_fields(cls):
        data.pop("preset", None)  # only a "start from" key for this class, not a field
    return from_dict(cls, data)


def save_config(obj: Any, path: str | os.PathLike[str], comment: str | None = None) -> None:
    """Write ``obj`` as YAML to ``path``, atomically (a temp file in the same directory, then ``os.replace``)."""
    import tempfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(to_yaml(obj, comment))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
