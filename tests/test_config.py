from pathlib import Path

import pytest

from clinical_ft import registry, resources
from clinical_ft.cli import main as cli_main
from clinical_ft.config import TaskCard, TrainConfig, file_values, from_dict, load, parse_overrides, read_yaml
from clinical_ft.errors import ConfigError


def test_unknown_keys_and_bad_values_are_reported_together(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("learning_rat: 1e-4\nmax_length: abc\nstride: 500\neval_strategy: sometimes\nwarmup_ratio: 1.5\n")
    with pytest.raises(ConfigError) as exc:
        load(TrainConfig, p)
    msg = str(exc.value)
    assert str(p) in msg
    assert "learning_rat: unknown key (did you mean 'learning_rate'?)" in msg
    assert "max_length: expected int, found str 'abc'" in msg
    assert "eval_strategy: expected one of" in msg
    # type errors do not hide range errors of other keys; stride depends on max_length, so it waits
    assert "warmup_ratio: expected a value in [0, 1), found 1.5" in msg
    assert len(exc.value.problems) == 4


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


def test_bad_overrides_are_all_reported_as_command_line_errors() -> None:
    with pytest.raises(ConfigError) as exc:
        parse_overrides(["a=1", "a.b=2", "c.d=1", "c=3", "noeq", "x=[1,"])
    assert exc.value.source == "command line" and len(exc.value.problems) == 4
    assert "'a.b=2': a was set to 1 by an earlier override; expected a mapping" in exc.value.problems


def test_override_problems_are_labelled_as_command_line(tmp_path: Path) -> None:
    p = tmp_path / "c.yaml"
    p.write_text("stride: 64\n")
    with pytest.raises(ConfigError) as exc:
        load(TrainConfig, p, ["learning_rate=abc", "warmup_ratio=2"])
    assert exc.value.source == f"{p} (with command-line overrides)"
    assert sorted(exc.value.problems) == [
        "command line: learning_rate: expected float, found str 'abc'",
        "command line: warmup_ratio: expected a value in [0, 1), found 2.0",
        "stride: expected 0 <= stride < max_length/2 (64), found 64",
    ]
    with pytest.raises(ConfigError) as exc:
        load(TrainConfig, None, ["learning_rate=abc"])
    assert exc.value.source == "command line"


def test_yaml_that_is_not_utf8_or_repeats_a_key_is_a_config_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("encoder: minilm\n# caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError) as exc:
        load(TrainConfig, bad)
    assert exc.value.problems == ["expected UTF-8 text; found byte 0xe9 at offset 21 (line 2)"]
    assert cli_main(["validate", str(bad)]) == 2
    assert f"{bad}: 1 problem(s)" in capsys.readouterr().err
    dup = tmp_path / "dup.yaml"
    dup.write_text("learning_rate: 1e-4\nseed: 1\nlearning_rate: 3e-5\ntask_options:\n  a: 1\n  a: 2\n")
    with pytest.raises(ConfigError) as exc:
        load(TrainConfig, dup)
    assert exc.value.problems == [
        "line 3: duplicate key 'learning_rate' (first at line 1); expected each key once",
        "line 6: duplicate key 'a' (first at line 5); expected each key once",
    ]
    merged = tmp_path / "merge.yaml"  # YAML merge keys are not duplicates
    merged.write_text("base: &b\n  a: 1\nother:\n  <<: *b\n  a: 2\n")
    assert read_yaml(merged) == {"base": {"a": 1}, "other": {"a": 2}}
    bom = tmp_path / "bom.yaml"
    bom.write_bytes(b"\xef\xbb\xbfseed: 3\n")
    assert load(TrainConfig, bom).seed == 3


def test_card_without_local_files_is_rejected() -> None:
    card = {"name": "x", "version": 1, "kind": "ner", "metric": "f1",
            "data": {"format": "conll", "hf_dataset": "bigbio/ncbi_disease"}}
    with pytest.raises(ConfigError) as exc:
        from_dict(TaskCard, card, "card.yaml")
    (problem,) = exc.value.problems
    assert problem.startswith("data.files: expected split -> file") and "download the dataset" in problem
    assert "bigbio/ncbi_disease" in problem


def test_file_values_remember_what_overrides_replaced() -> None:
    cfg = load(TrainConfig, resources.find("ner/minilm", "configs"), ["num_train_epochs=1"])
    source, values = file_values(cfg)
    assert source.endswith("minilm.yaml") and cfg.num_train_epochs == 1.0
    assert values == {"num_train_epochs": load(TrainConfig, resources.find("ner/minilm", "configs")).num_train_epochs}
    assert file_values(TrainConfig()) == ("", {})


def test_every_shipped_card_and_config_is_valid_and_documented() -> None:
    cards = resources.list_shipped("tasks")
    configs = resources.list_shipped("configs")
    assert cards and configs
    for kind in ("tasks", "configs"):
        for rel in resources.list_shipped(kind):
            path = resources.find(rel, kind)
            if kind == "tasks":  # whole: format, split roles, columns and metric against the card's task
                assert registry.load_card(path).references, f"{path}: cards carry published reference scores"
            else:  # task_options against the task of configs/<kind>/
                assert registry.config_task(path) is not None, f"{path}: configs/<kind>/ names a task kind"
                registry.load_config(path, None, registry.config_task(path))
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


FIXTURE_CARDS = sorted(Path(__file__).parent.joinpath("fixtures").rglob("*.yaml"))


@pytest.mark.parametrize("path", FIXTURE_CARDS, ids=[p.name for p in FIXTURE_CARDS])
def test_every_fixture_card_is_valid_for_its_task(path: Path) -> None:
    card = registry.load_card(path)
    assert registry.for_card(card).kind == card.kind


NCBI = """name: x
version: 1
kind: ner
data:
  format: conll
  path: ncbi_mini
  files: {train: train.tsv, validation: devel.tsv, test: test.tsv}
metric: f1
"""


def test_misspelt_card_keys_fail_naming_file_and_key_all_together(tmp_path: Path) -> None:
    card = tmp_path / "card.yaml"
    card.write_text(NCBI.replace("validation:", "valdation:").replace("format: conll", "format: conlll")
                    .replace("metric: f1", "metric: seqeval entity-level f1") + "columns: {tokens: token}\n")
    with pytest.raises(ConfigError) as exc:
        registry.load_card(card)
    assert str(card) in str(exc.value)
    assert exc.value.problems == ["data.format: expected one of ['conll'] for kind ner, found 'conlll'"]
    card.write_text(NCBI.replace("validation:", "valdation:").replace("metric: f1", "metric: seqeval entity-level f1")
                    + "columns: {tokens: token}\n")
    with pytest.raises(ConfigError) as exc:
        registry.load_card(card)
    assert exc.value.problems == [
        "data.files.valdation: unknown split role; expected one of ['train', 'validation', 'test']",
        "columns: format 'conll' has no named columns; remove this block",
        "metric: expected a score key of the ner task such as ['precision', 'recall', 'f1'] or <label>_f1, "
        "found 'seqeval entity-level f1'"]
    bad_kind = NCBI.replace("kind: ner", "kind: doc_classification")  # no task serves it
    card.write_text(bad_kind)
    with pytest.raises(ConfigError, match="kind: expected one of"):
        registry.load_card(card)


@pytest.mark.parametrize("kind,options", [("relation", {"poolin": "cls"}), ("relation", {"pooling": "avg"}),
                                          ("ner", {"pooling": "cls"}), ("readmission", {"x": 1}),
                                          ("qa", {"n_best_size": 99})])
def test_task_options_are_validated_for_every_task(kind: str, options: dict, tmp_path: Path) -> None:
    """Unknown, mistyped or out-of-range task_options fail for every kind, naming the file and the key."""
    cfg = tmp_path / "configs" / kind / "c.yaml"
    cfg.parent.mkdir(parents=True)
    cfg.write_text("task_options:\n" + "".join(f"  {k}: {v}\n" for k, v in options.items()) + "warmup_ratio: 2\n")
    for head in registry.heads(kind):
        with pytest.raises(ConfigError) as exc:
            registry.load_config(cfg, None, head)
        assert str(cfg) in str(exc.value) and len(exc.value.problems) == 2  # reported with the other problem
        assert any(p.startswith(f"task_options.{next(iter(options))}") for p in exc.value.problems)
    assert cli_main(["validate", str(cfg)]) == 2  # the folder names the task whose options are checked


def test_validate_reports_missing_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    card = tmp_path / "tasks" / "card.yaml"
    card.parent.mkdir()
    card.write_text(NCBI.replace("test.tsv", "no_such_test.tsv"))
    assert cli_main(["validate", str(card), "--data-dir", "tests/fixtures"]) == 0  # a valid card, data missing
    out = capsys.readouterr().out
    assert "valid task card" in out and "data missing" in out and "data.files.test: no_such_test.tsv" in out
    assert "data.files.train" not in out


def test_a_task_cli_refuses_a_card_or_run_of_another_kind(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from clinical_ft.ner.cli import main as ner_main
    from clinical_ft.relation.cli import main as relation_main

    card = "tests/fixtures/relation/gad_mini.yaml"
    assert ner_main(["train", "--card", card, "--out", str(tmp_path / "r")]) == 2
    assert "is of kind relation, not ner; use python -m clinical_ft.relation" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
    bad = tmp_path / "bad.yaml"  # every problem of a card of the command's kind at once
    bad.write_text(Path(card).read_text().replace("metric: f1", "metric: F1 of class 1").replace("test:", "tset:"))
    assert relation_main(["train", "--card", str(bad), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "2 problem(s)" in err and "data.files.tset: unknown split role" in err and "metric: expected" in err
