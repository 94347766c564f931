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


def test_the_budget_options_reach_every_variant_and_the_report(tmp_path):
    """--batch-size / --pool / --edit-share: the shared budget, on the frozen pool (VAE latent included)."""
    import yaml

    args = ["reproduce", "generator", "-o", str(tmp_path), "--quick", "--variants", "vae_latent",
            "--batch-size", "4", "--pool", "12", "--edit-share", "0.5"]
    assert main(args) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert {k: results["settings"][k] for k in ("batch_size", "pool", "edit")} == {"batch_size": 4, "pool": 12, "edit": 0.5}
    cfg = yaml.safe_load((tmp_path / "runs" / "vae_latent" / "config.yaml").read_text())
    assert cfg["pool"] == 12 and cfg["mix"]["edit"] == 0.5 and cfg["loop"]["batch_size"] == 4
    assert cfg["autoencoder"]
