"""``unilip config show``: a preset, a YAML file and ``key=value`` overrides, resolved and printed as YAML."""

from __future__ import annotations

import argparse
import sys

from unilip.cli.args import path_arg
from unilip.config import PRESETS


def cmd_config_show(args: argparse.Namespace) -> int:
    from unilip.config import UniLIPConfig, load_config, to_yaml

    cfg = load_config(UniLIPConfig, args.config, args.overrides, preset=args.preset)
    sys.stdout.write(to_yaml(cfg))
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("config", help="show configs and presets", description="Show and check configs.")
    config_sub = p.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    q = config_sub.add_parser("show", help="print a resolved config as YAML",
                              description="Print the config built from a preset, a YAML file and key=value overrides.")
    q.add_argument("--preset", choices=list(PRESETS), help="start from this preset (default: the file's, else 1b)")
    q.add_argument("--config", type=path_arg, help="YAML config file")
    q.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. generator.cfg_scale=3")
    q.set_defaults(func=cmd_config_show)
