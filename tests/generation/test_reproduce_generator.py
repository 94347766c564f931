"""`unilip reproduce generator --quick`: the four variants train, are scored and reported (a smoke run, ~1 min)."""

import json

from unilip.cli import main


def test_quick_generator_reproduction_writes_the_report(tmp_path):
    assert main(["reproduce", "generator", "-o", str(tmp_path), "--quick", "--variants", "queries"]) == 0
    first = json.loads((tmp_path / "eval" / "queries" / "result.json").read_text())
    assert main(["reproduce", "generator", "-o", str(tmp_path), "--quick"]) == 0  # reuses `queries`, does the rest
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["variants"]["queries"] == first
    assert set(results["variants"]) == {"dual", "queries", "hidden", "vae_latent"}
    for r in results["variants"].values():
        assert 0 <= r["geneval"]["overall"] <= 1 and 0 <= r["imgedit"]["overall"] <= 1 and 0 <= r["wise"]["overall"] <= 1
    assert results["latent_scale"]["unilip"] > 0 and results["latent_scale"]["vae"] > 0
    saved = json.loads((tmp_path / "runs" / "queries" / "final" / "config.json").read_text())
    assert saved["condition_mode"] == "queries"
    report = (tmp_path / "report.md").read_text()
    assert "QUICK" in report and "3.81" in report and "vae_latent" in report
    assert (tmp_path / "eval" / "dual" / "imgedit-mini.html").is_file()
    assert main(["reproduce", "generator", "-o", str(tmp_path), "--quick", "--variants", "both"]) == 2
