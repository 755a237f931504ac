"""The one settings layer: run config, [task] and study spec validated alike, importable without
torch, allowed names defined once, presets that never silently override a key, JSON Schemas."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from ecg_transfer import settings
from ecg_transfer.errors import ConfigError
from ecg_transfer.settings import RunConfig, TaskSettings, json_schemas, spec_from_dict

REPO = Path(__file__).resolve().parents[1]
TASK = {"dataset": "ptbxl", "root": "data/ptbxl", "labels": "diagnostic"}
SPEC_MIN = {"source": {"root": "data/ptbxl"}, "target": {"root": "data/g12ec"}}


def test_importable_without_torch():
    code = "import sys, ecg_transfer.settings as s; s.RunConfig(); s.json_schemas(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.parametrize(
    "build, key",
    [
        (lambda: RunConfig.from_dict({"batch_size": True}), "batch_size"),
        (lambda: RunConfig.from_dict({"seed": True}), "seed"),
        (lambda: TaskSettings.from_dict({**TASK, "fraction_parts": True}), "task.fraction_parts"),
        (lambda: TaskSettings.from_dict({**TASK, "min_count": True}), "task.min_count"),
        (lambda: TaskSettings.from_dict({**TASK, "train_folds": [1, True]}), "task.train_folds[1]"),
        (lambda: spec_from_dict({**SPEC_MIN, "study": {"bootstrap": True}}), "study.bootstrap"),
        (lambda: spec_from_dict({**SPEC_MIN, "target": {"root": "x", "n_folds": True}}), "target.n_folds"),
        (lambda: spec_from_dict({**SPEC_MIN, "source": {"root": "x", "epochs": True}}), "source.epochs"),
    ],
)
def test_true_is_never_an_integer_anywhere(build, key):
    """The three hand-written engines disagreed here (two accepted `true` as an integer)."""
    with pytest.raises(ConfigError) as info:
        build()
    assert f"'{key}'" in str(info.value) and "expected an integer" in str(info.value)


def test_allowed_names_are_defined_once():
    from ecg_transfer import labels, models, signal
    from ecg_transfer.evaluation.calibration import CALIBRATORS
    from ecg_transfer.study import spec

    assert models.MODEL_NAMES == settings.MODEL_NAMES
    assert tuple(CALIBRATORS) == settings.CALIBRATORS
    assert signal.INPUT_KINDS is settings.INPUT_KINDS
    assert tuple(labels.PROTOCOLS) == settings.PROTOCOLS
    assert labels.PTBXL_TASKS is settings.PTBXL_TASKS
    assert spec.CALIBRATORS is settings.CALIBRATORS


def test_nested_errors_name_the_dotted_key_and_what_is_allowed():
    cases = {
        "finetune.stages[1].lr[1]": {"finetune": {"policy": "gradual", "stages": [{}, {"lr": [1e-6, "x"]}]}},
        "task.labels": {"task": {**TASK, "dataset": "cinc", "root": "x"}},
        "task.leads": {"task": {**TASK, "leads": ["I", "V7"]}},
        "finetune.policy": {"finetune": {"policy": "graduall"}},
    }
    for key, data in cases.items():
        with pytest.raises(ConfigError, match=re.escape(f"'{key}'")):
            RunConfig.from_dict(data)
    with pytest.raises(ConfigError, match=r"unknown config key 'task\.labelz'.*labels"):
        RunConfig.from_dict({"task": {**TASK, "labelz": "all"}})
    assert TaskSettings.from_dict({**TASK, "leads": ["v1", "aVR", "I"]}).leads == ("I", "AVR", "V1")


def test_a_preset_never_silently_overrides_a_key():
    # the case: `epochs = 2` with the head-then-all preset trained 60 epochs without a word
    with pytest.raises(
        ConfigError,
        match=r"'epochs': 2, but finetune.policy='head-then-all' trains 60 .*"
        r"finetune\.head_epochs, finetune\.all_epochs",
    ):
        RunConfig.from_dict({"epochs": 2, "finetune": {"policy": "head-then-all"}})
    with pytest.raises(ConfigError, match=r"'schedule\.max_lr': is not used by finetune\.policy='gradual'"):
        RunConfig.from_dict({"schedule": {"max_lr": 0.003}, "finetune": {"policy": "gradual"}})
    with pytest.raises(ConfigError, match=r"'epochs': 3, but finetune\.epochs = 2"):
        RunConfig.from_dict({"epochs": 3, "finetune": {"policy": "all", "epochs": 2}})
    # honoured where it is read, and the resolved epochs always say what trains
    assert RunConfig.from_dict({"finetune": {"policy": "gradual"}}).epochs == 40
    assert RunConfig.from_dict({"epochs": 40, "finetune": {"policy": "gradual"}}).epochs == 40
    cfg = RunConfig.from_dict({"finetune": {"policy": "head-then-all", "head_epochs": 2, "all_epochs": 3}})
    assert cfg.epochs == 5 and [s.epochs for s in cfg.stages()] == [2, 3]
    assert RunConfig.from_dict({"epochs": 7}).epochs == 7 and RunConfig().epochs == 50
    # a resolved config reloads to itself (config.json of a run)
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
    # replace() keeps what was not set unset: switching the policy re-derives epochs
    assert RunConfig().replace(finetune={"policy": "gradual"}).epochs == 40


def _shipped_files():
    run_configs = sorted((REPO / "configs").glob("*.toml"))
    specs = sorted((REPO / "studies").glob("*.toml"))
    return run_configs, specs


def test_json_schemas_check_the_shipped_files_and_refuse_a_bad_one():
    jsonschema = pytest.importorskip("jsonschema")
    schemas = json_schemas()
    run_configs, specs = _shipped_files()
    assert run_configs and specs
    for path in run_configs:
        jsonschema.validate(tomllib.loads(path.read_text()), schemas["run-config"])
    for path in specs:
        jsonschema.validate(tomllib.loads(path.read_text()), schemas["study-spec"])
    bad = tomllib.loads(run_configs[0].read_text()) | {"aggregate": "median"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schemas["run-config"])
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**SPEC_MIN, "study": {"modle": "x"}}, schemas["study-spec"])


def test_config_schema_and_show_commands(tmp_path, capsys):
    from ecg_transfer.cli import main

    assert main(["config", "schema", "--out", str(tmp_path)]) == 0
    run_schema = json.loads((tmp_path / "run-config.schema.json").read_text())
    assert "finetune" in run_schema["properties"] and run_schema["additionalProperties"] is False
    cfg = tmp_path / "ft.toml"
    cfg.write_text('[finetune]\npolicy = "head-then-all"\nhead_epochs = 1\n')
    capsys.readouterr()
    assert main(["config", "show", str(cfg)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["epochs"] == 31 and shown["batch_size"] == 128  # defaults filled in, preset resolved
    assert [s["epochs"] for s in shown["# stages (what runs)"]] == [1, 30]
    assert main(["config", "show", str(REPO / "studies" / "ptbxl_to_g12ec.toml"), "--profile", "smoke"]) == 0
    assert json.loads(capsys.readouterr().out)["study"]["machinery_check"] is True
    cfg.write_text('epochs = 2\n[finetune]\npolicy = "head-then-all"\n')
    assert main(["config", "show", str(cfg)]) == 2
    assert "finetune.head_epochs" in capsys.readouterr().err


def test_config_show_says_what_finetune_makes_of_a_file_with_policy_none(tmp_path, capsys):
    """One file serves standalone and finetune (the guide's configs/my_cinc_set.toml); `finetune`
    turns policy none into head-then-all, so `config show` lists those stages too, or why it refuses."""
    from ecg_transfer.cli import main

    key = "# stages with `ecg-transfer finetune` (policy none becomes head-then-all)"
    assert main(["config", "show", str(REPO / "configs" / "my_cinc_set.toml")]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [s["epochs"] for s in shown["# stages (what runs)"]] == [50]  # standalone / train
    assert [(s["train"], s["epochs"]) for s in shown[key]] == [("head", 30), ("all", 30)]
    cfg = tmp_path / "both.toml"
    cfg.write_text("epochs = 2\n")  # fine for standalone; finetune's preset refuses a top-level epochs
    assert main(["config", "show", str(cfg)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["# stages (what runs)"][0]["epochs"] == 2 and shown[key].startswith("refused: ")
    cfg.write_text('[finetune]\npolicy = "all"\nepochs = 3\n')
    assert main(["config", "show", str(cfg)]) == 0
    assert key not in json.loads(capsys.readouterr().out)  # a policy of its own: nothing to say
    cfg.write_text('[ssl]\nmethod = "cpc"\n')  # the command's own refusal, not the preset's stages
    assert main(["config", "show", str(cfg)]) == 0
    assert json.loads(capsys.readouterr().out)[key] == (
        "refused: the file has an [ssl] table: self-supervised pre-training runs with "
        "`ecg-transfer pretrain`, not `finetune`; fine-tune its result with --from"
    )


def test_one_ssl_refusal_for_every_command_and_the_api(tmp_path, capsys):
    """An [ssl] table pre-trains from random weights, with pretrain or train only: the settings
    layer says why once, and the command line and the API refuse with that text."""
    import ecg_transfer as et
    from ecg_transfer.cli import main
    from ecg_transfer.settings import RunConfig
    from ecg_transfer.settings.run import ssl_refusal

    ssl = RunConfig.from_dict({"ssl": {"method": "cpc"}})
    assert ssl_refusal(RunConfig(), "finetune", from_run=True) is None
    assert ssl_refusal(ssl, "pretrain") is None and ssl_refusal(ssl, "train") is None
    for command in ("standalone", "finetune"):
        assert f"not `{command}`" in ssl_refusal(ssl, command)
    assert "drop --from" in ssl_refusal(ssl, "train", from_run=True)
    with pytest.raises(ConfigError, match=r"the config has an \[ssl\] table, which pre-trains from random weights"):
        et.train({"ssl": {"method": "cpc"}}, tmp_path / "run", init_from=tmp_path / "pre")
    cfg = tmp_path / "ssl.toml"
    cfg.write_text('[ssl]\nmethod = "cpc"\n')
    assert main(["train", str(cfg), "--run-dir", str(tmp_path / "run"), "--from", str(tmp_path / "pre")]) != 0
    assert "ssl.toml has an [ssl] table, which pre-trains from random weights: drop --from" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_the_configuration_reference_is_current():
    """docs/configuration.md is generated from the settings models: regenerate it with
    `ecg-transfer config reference > docs/configuration.md` when a key changes."""
    from ecg_transfer.settings.reference import reference_markdown

    text = reference_markdown()
    assert (REPO / "docs" / "configuration.md").read_text(encoding="utf-8") == text
    for key in ("`policy`", "`train_fraction`", "`machinery_check`", "`leads`"):
        assert key in text
