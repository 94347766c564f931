"""The package's lazy exports all resolve, and importing the config does not pull in the heavy modules."""

import subprocess
import sys

import unilip.data.miniworld as mw


def test_every_export_resolves():
    for name in mw.__all__:
        assert getattr(mw, name) is not None


def test_config_import_is_light():
    code = "import sys, unilip.config; print(any(m in sys.modules for m in ('scipy', 'torch', 'unilip.data.miniworld.detector')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
