from pathlib import Path

import pytest

from clinical_ft import resources
from clinical_ft.cli import main as cli_main
from clinical_ft.config import TaskCard, TrainConfig, from_dict, load, parse_overrides
from clinical_ft.errors import ConfigError


def test_unknown_keys_and_bad_values_are_reported_together(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("learning_rat: 1e-4\nmax_length: abc\nstride: 500\neval_strategy: sometimes\n")
    with pytest.raises(ConfigError) as exc:
        load(TrainConfig, p)
    msg = str(exc.value)
    assert str(p) in msg
    assert "learning_rat: unknown key (did you mean 'learning_rate'?)" in msg
    assert "max_length: expected int, found str 'abc'" in msg
    assert "eval_strategy: expected one of" in msg
    assert len(exc.value.problems) == 3  # stride is checked only once types are right


def test_value_ranges_are_checked() -> None:
    with pytest.raises(ConfigError) as exc:
        from_dict(TrainConfig, {"stride": 100, "max_length": 128, "warmup_ratio": 1.5}, "x")
    assert len(exc.value.problems) == 2


def test_card_requires_fields_and_nested_keys() -> None:
    with pytest.raises(ConfigError) as exc:
        from_dict(TaskCard, {"name": "x", "kind": "nerr", "data": {"format": "conll", "filez": {}}}, "card.yaml")
    text = "\n".join(exc.value.problems)
    assert "kind: expected one of" in text
    assert "data.filez: unknown key" in text
    assert "version: required key is missing" in text
    assert "metric: required key is missing" in text


def test_overrides_are_typed_and_nested() -> None:
    assert from_dict(TrainConfig, {"eval_strategy": False}, "yaml `eval_strategy: no`").eval_strategy == "no"
    over = parse_overrides(["eval_strategy=no", "learning_rate=3e-5", "num_train_epochs=2", "task_options.pooling=cls", "group_by_length=false"])
    cfg = from_dict(TrainConfig, over, "cli")
    assert cfg.learning_rate == 3e-5 and cfg.num_train_epochs == 2.0 and cfg.group_by_length is False
    assert cfg.task_options == {"pooling": "cls"} and cfg.eval_strategy == "no"
    with pytest.raises(ConfigError):
        parse_overrides(["no_equals_sign"])


def test_every_shipped_card_and_config_is_valid_and_documented() -> None:
    cards = resources.list_shipped("tasks")
    configs = resources.list_shipped("configs")
    assert cards and configs
    for kind, cls in (("tasks", TaskCard), ("configs", TrainConfig)):
        for rel in resources.list_shipped(kind):
            path = resources.find(rel, kind)
            obj = load(cls, path)
            if cls is TaskCard:
                assert obj.references, f"{path}: cards carry published reference scores"
            text = path.read_text()
            header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
            assert text.startswith("# "), f"{path}: must start with a comment"
            assert "python -m clinical_ft." in header or "clinical-ft " in header, f"{path}: header names the command"

def test_cli_ls_and_validate(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert cli_main(["ls"]) == 0
    assert "ner/ncbi_disease" in capsys.readouterr().out
    assert cli_main(["validate"]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("encoder: minilm\nbatch: 3\n")
    assert cli_main(["validate", str(bad)]) == 2
    assert "batch: unknown key" in capsys.readouterr().err
