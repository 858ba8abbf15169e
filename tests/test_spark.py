"""Spark scoring (clinical_ft.readmission.spark) equals `readmission predict` on the same notes.

One local[2] session for the module. Skipped without pyspark or a Java runtime, except under CI=true,
where either missing fails (.ci/run installs Java; set-up command 2 installs the `spark` extra).
"""

from __future__ import annotations

import csv
import os
import shutil
import sys
from pathlib import Path

import pytest

from clinical_ft import engine
from clinical_ft.config import TaskCard, TrainConfig, load
from clinical_ft.readmission import TASK, infer

CARD = "tests/fixtures/readmission/notes_mini.yaml"
pytestmark = pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas")


def _need(what: str, ok: bool, how: str) -> None:
    if ok:
        return
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(f"CI=true but {what} is missing ({how})")
    pytest.skip(f"{what} missing ({how})")


@pytest.fixture(scope="module")
def spark():  # noqa: ANN201
    try:
        import pyspark  # noqa: F401
    except ImportError:
        pyspark = None
    _need("pyspark", pyspark is not None, 'pip install "clinical-ft[spark]"')
    _need("a Java runtime", shutil.which("java") is not None, "apt-get install openjdk-17-jre-headless")
    os.environ["PYSPARK_PYTHON"] = os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable  # workers: this venv
    os.environ["PYTHONPATH"] = os.pathsep.join([str(Path.cwd()), os.environ.get("PYTHONPATH", "")])
    from pyspark.sql import SparkSession

    session = (SparkSession.builder.master("local[2]").appName("clinical_ft-tests").config("spark.ui.enabled", "false")
               .config("spark.sql.shuffle.partitions", "2").getOrCreate())
    yield session
    session.stop()


@pytest.fixture(scope="module")
def run_dir(tiny_encoder: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("spark") / "run"
    cfg = TrainConfig(encoder=tiny_encoder, max_length=32, stride=8, max_steps=4, per_device_train_batch_size=4,
                      eval_strategy="epoch", early_stopping_patience=0, task_options={"bootstrap": 0})
    engine.train(TASK, load(TaskCard, CARD), cfg, out, data_dir="tests/fixtures")
    return out


def _notes() -> list[list[str | None]]:
    rows = list(csv.DictReader(open("tests/fixtures/readmission/notes_mini/test.csv", encoding="utf-8")))
    first = rows[0]["admission_id"]
    return ([[first, rows[0]["text"]], [first, "a second note under the same id"], ["empty", "  "], ["", "no id"]]
            + [[r["admission_id"], r["text"]] for r in rows[1:]]
            + [[f"x{i}", rows[i % len(rows)]["text"] * (1 + i % 3)] for i in range(7)])


def test_spark_scores_equal_predict_and_bad_rows_are_reported(spark, run_dir: Path, tmp_path: Path) -> None:  # noqa: ANN001
    import pandas as pd

    from clinical_ft.readmission import spark as spark_score

    notes = _notes()
    path = tmp_path / "notes.csv"
    pd.DataFrame(notes, columns=["admission_id", "text"]).to_csv(path, index=False)
    _, run = infer.open_run(run_dir)
    infer.predict_csv(run, path, tmp_path / "risk.csv", batch_size=3, progress=False)
    expected = pd.read_csv(tmp_path / "risk.csv", dtype={"admission_id": str})
    skipped = pd.read_csv(tmp_path / "risk.skipped.csv", dtype={"id": str}, keep_default_na=False)

    df = spark.createDataFrame(pd.DataFrame({"hadm": [None if not i else i for i, _ in notes], "note": [t for _, t in notes]}))
    assert df.rdd.getNumPartitions() == 2
    got = spark_score.score(df, run_dir, id_col="hadm", text_col="note", batch_size=3, threads=1).toPandas()
    assert len(got) == len(notes)  # every row comes back
    scored, bad = got[got["reason"].isna()], got[got["reason"].notna()]
    assert list(scored["admission_id"]) == list(expected["admission_id"])
    for col in ("risk", "score", "top_chunk_prob"):
        assert (scored[col].to_numpy() - expected[col].to_numpy()).max() < 1e-5, col
        assert (expected[col].to_numpy() - scored[col].to_numpy()).max() < 1e-5, col
    for col in ("n_chunks", "top_chunk_start", "top_chunk_end"):
        assert list(scored[col].astype(int)) == list(expected[col]), col
    for col in ("aggregation", "calibration"):
        assert list(scored[col]) == list(expected[col]), col
    assert sorted(bad["admission_id"]) == sorted(skipped["id"]) == sorted(["", "empty", notes[0][0]])
    reasons = dict(zip(bad["admission_id"], bad["reason"]))
    assert reasons["empty"] == "empty note (no text)" and reasons[""] == "missing id in column 'hadm'"
    assert reasons[notes[0][0]] == "duplicate admission id (first at row 1 of this partition)"
    assert bad["risk"].isna().all()
    # a deployment prevalence, as predict --prevalence
    _, shifted_run = infer.open_run(run_dir, prevalence=0.1)
    infer.predict_csv(shifted_run, path, tmp_path / "shifted.csv", batch_size=3, progress=False)
    shifted = pd.read_csv(tmp_path / "shifted.csv", dtype={"admission_id": str})
    got = spark_score.score(df, run_dir, id_col="hadm", text_col="note", prevalence=0.1, threads=1).toPandas()
    got = got[got["reason"].isna()]
    assert abs(got["risk"].to_numpy() - shifted["risk"].to_numpy()).max() < 1e-5
    assert list(got["prevalence"]) == list(shifted["prevalence"]) == [0.1] * len(shifted)


def test_spark_score_refuses_a_missing_column(spark, run_dir: Path) -> None:  # noqa: ANN001
    from clinical_ft.errors import ClinicalFTError
    from clinical_ft.readmission import spark as spark_score

    df = spark.createDataFrame([("1", "text")], "admission_id string, body string")
    with pytest.raises(ClinicalFTError, match=r"no column\(s\) \['text'\]"):
        spark_score.score(df, run_dir)


def test_spark_integer_ids_with_a_null_stay_integers(spark, run_dir: Path,  # noqa: ANN001
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from clinical_ft.readmission import spark as spark_score

    text = "Patient admitted with chest pain; discharged home on aspirin."
    df = spark.createDataFrame([(1, text), (None, text), (100001, text)], "hadm long, note string").coalesce(1)
    seen, map_in_pandas = [], type(df).mapInPandas

    def recording(self, *args: object, **kwargs: object) -> object:  # noqa: ANN001
        seen.append(self.schema.simpleString())
        return map_in_pandas(self, *args, **kwargs)

    monkeypatch.setattr(type(df), "mapInPandas", recording)
    got = spark_score.score(df, run_dir, id_col="hadm", text_col="note", threads=1).toPandas()
    # text before the Arrow batches: pyspark versions that hand a long column with a null to pandas as
    # float64 would write "1.0" (4.3 hands nullable Int64, so the ids alone would not show it)
    assert seen == ["struct<hadm:string,note:string>"]
    assert list(got["admission_id"]) == ["1", "", "100001"]  # not "1.0" (int with null reaches pandas as float64)
    assert list(got["reason"].fillna("scored")) == ["scored", "missing id in column 'hadm'", "scored"]


def test_each_worker_loads_the_run_once_and_again_after_retraining(run_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    """No Spark: the function mapInPandas runs, on two partitions of two batches each."""
    import pandas as pd

    from clinical_ft.readmission import spark as spark_score

    calls = []
    opened = infer.open_run

    def counting(*args: object, **kwargs: object) -> object:
        calls.append(args[0])
        return opened(*args, **kwargs)

    monkeypatch.setattr(infer, "open_run", counting)
    monkeypatch.setattr(spark_score, "_RUNS", {})
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    text = "Patient admitted with chest pain; discharged home on aspirin."

    def partition(first: int) -> list[pd.DataFrame]:
        return [pd.DataFrame({"id": [str(first + 2 * b + i) for i in range(2)], "text": [text] * 2}) for b in range(2)]

    for first in (0, 10):
        out = list(spark_score.score_batches(iter(partition(first)), str(run), "id", "text", threads=1))
        assert [len(o) for o in out] == [2, 2] and all(o["reason"].isna().all() for o in out)
    assert len(calls) == 1
    model = run / "model.safetensors"
    os.utime(model, ns=(model.stat().st_atime_ns, model.stat().st_mtime_ns + 10**9))  # retrained in place
    list(spark_score.score_batches(iter(partition(20)), str(run), "id", "text", threads=1))
    assert len(calls) == 2
