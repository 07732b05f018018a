"""The registry (one list for CLI, docs, tests) and the typed config with presets."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from reportgen import registry
from reportgen.config import allowed_values, make_config, parse_set
from reportgen.errors import ConfigError
from reportgen.report import Section

EXPECTED = {
    "card", "filters", "activations",  # issue 2
    "neighbors", "embedding", "patches", "occlusion", "saliency", "segmentation",  # issue 3
    "guided_backprop", "class_visualization", "adversarial", "deepdream",  # issue 4
}


def test_registry_lists_the_contracted_ids():
    ids = set(registry.ids())
    missing = EXPECTED - ids
    assert not missing, f"techniques missing from the registry: {missing}"


def test_every_technique_is_documented():
    for t in registry.all_techniques():
        assert t.title and len(t.summary) > 40, t.id
        assert t.references, f"{t.id} cites no paper"
        mod = __import__(t.module, fromlist=["x"])
        assert mod.__doc__ and len(mod.__doc__) > 80, f"{t.module} needs a docstring (paper, formula, reading)"
        for p in registry.PRESETS:
            opts = t.default_options(p)
            assert dataclasses.is_dataclass(opts)


def test_duplicate_ids_are_rejected():
    @registry.technique("zz_test_dup", "Dup", references=[])
    def one(ctx, opts):
        return Section("zz_test_dup", "Dup")

    try:
        with pytest.raises(ValueError, match="already registered"):
            @registry.technique("zz_test_dup", "Dup again")
            def two(ctx, opts):
                return Section("zz_test_dup", "Dup")
    finally:
        registry.unregister("zz_test_dup")


def test_bad_ids_and_preset_options_are_rejected():
    with pytest.raises(ValueError):
        registry.technique("Bad-Id", "x")
    @dataclasses.dataclass
    class O:
        a: int = 1
    with pytest.raises(ValueError, match="unknown options"):
        registry.technique("zz_ok", "x", options=O, presets={"minimal": {"b": 2}})


def test_presets_layer_and_toml_and_cli_override(tmp_path):
    toml = tmp_path / "cfg.toml"
    toml.write_text(
        'preset = "minimal"\nskip = ["embedding"]\n[general]\nbatch_size = 5\nlayer = "features.3"\n'
        "[techniques.activations]\nmax_images = 2\n"
    )
    cfg = make_config(toml_path=toml, general={"batch_size": 7},
                      technique_overrides=parse_set(["activations.max_channels=9"]))
    assert cfg.preset == "minimal"
    assert cfg.general.batch_size == 7  # CLI beats TOML
    assert cfg.general.layer == "features.3"
    assert cfg.options("activations").max_images == 2
    assert cfg.options("activations").max_channels == 9
    assert "embedding" not in [t.id for t in cfg.enabled()]
    full = make_config("full")
    minimal = make_config("minimal")
    assert full.options("activations").max_images > minimal.options("activations").max_images


def test_config_errors_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="unknown preset"):
        make_config("huge")
    with pytest.raises(ConfigError, match="did you mean max_images"):
        make_config(technique_overrides={"activations": {"max_imagez": 3}})
    with pytest.raises(ConfigError, match="expected an integer"):
        make_config(technique_overrides={"activations": {"max_images": "many"}})
    with pytest.raises(ConfigError, match="unknown technique"):
        make_config(only=["salency"])
    bad = tmp_path / "bad.toml"
    bad.write_text("preset = [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        make_config(toml_path=bad)
    with pytest.raises(ConfigError, match="technique.option=value"):
        parse_set(["oops"])


def test_only_selects_in_report_order():
    cfg = make_config(only=["activations", "card"])
    assert [t.id for t in cfg.enabled()] == ["card", "activations"]


def test_option_domains_are_checked_in_one_place_for_every_entry_point(tmp_path, image_dir):
    """Literal choices and Range bounds: --set text, TOML values and Python values go through one check; a
    Config built by hand is checked by make_context before the model is touched; every preset is valid."""
    from reportgen.build import make_context
    from reportgen.config import check_config
    from reportgen.registry import all_techniques

    for preset in ("minimal", "standard", "full"):
        check_config(make_config(preset))  # defaults and presets are inside their own domains
    with pytest.raises(ConfigError, match=r"occlusion\.window: -3 is out of range; allowed: int >= 1 or None"):
        make_config(technique_overrides={"occlusion": {"window": -3}})  # Python value, not text
    with pytest.raises(ConfigError, match=r"'blu' is not one of the choices \(did you mean blur\?\)"):
        make_config(technique_overrides=parse_set(["integrated_gradients.baseline=blu"]))
    toml = tmp_path / "c.toml"
    toml.write_text("[techniques.smoothgrad]\nnoise = -0.1\n")
    with pytest.raises(ConfigError, match=r"smoothgrad\.noise: -0\.1 is out of range"):
        make_config(toml_path=toml)
    with pytest.raises(ConfigError, match=r"epsilons: 0\.0 is out of range; allowed: list of float > 0"):
        make_config(technique_overrides={"adversarial": {"epsilons": [1.0, 0.0]}})
    assert make_config(technique_overrides=parse_set(["adversarial.target=3"])).options("adversarial").target == 3
    assert make_config(technique_overrides={"adversarial": {"target": "least_likely"}})

    cfg = make_config("minimal")
    cfg.techniques["occlusion"] = dataclasses.replace(cfg.options("occlusion"), fill="gray")
    touched = []

    class Recorder(torch.nn.Module):
        def to(self, *a, **k):
            touched.append(1)
            return super().to(*a, **k)

    with pytest.raises(ConfigError, match="did you mean grey"):
        make_context(Recorder(), image_dir, config=cfg)
    assert touched == []
    described = [allowed_values(t.options, f.name) for t in all_techniques() for f in dataclasses.fields(t.options)]
    assert sum("|" in d for d in described) >= 12 and sum(">" in d for d in described) >= 60
