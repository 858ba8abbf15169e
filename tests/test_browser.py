"""The HTML reports open in headless Chromium with no console error and no network request.

Chromium is driven over the DevTools protocol on a pipe (``--remote-debugging-pipe``: JSON
messages ending in NUL on file descriptors 3 and 4), so no extra Python package is needed.
Skipped when Debian's `chromium` is missing, unless CI=true, where a missing browser fails.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.browser

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1280,1600", "--remote-debugging-pipe"]


@pytest.fixture(scope="session")
def browser() -> str:
    """The chromium executable; requested first so that a skip costs nothing."""
    return chromium()


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe:
        return exe
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail("CI=true but Debian `chromium` is not installed (.ci/run must `apt-get install -y chromium`)")
    pytest.skip("chromium not installed (apt-get install -y chromium)")


class DevTools:
    """Minimal DevTools-protocol client over Chromium's debugging pipe."""

    def __init__(self, exe: str, profile: Path):
        cmd_r, cmd_w = os.pipe()
        resp_r, resp_w = os.pipe()
        # child sees commands on fd 3 and answers on fd 4; move our ends out of the way first
        hi_cmd_r, hi_resp_w = fcntl.fcntl(cmd_r, fcntl.F_DUPFD, 10), fcntl.fcntl(resp_w, fcntl.F_DUPFD, 10)

        def child_fds() -> None:
            os.dup2(hi_cmd_r, 3)
            os.dup2(hi_resp_w, 4)

        self.proc = subprocess.Popen([exe, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                                     preexec_fn=child_fds, close_fds=False,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for fd in (cmd_r, resp_w, hi_cmd_r, hi_resp_w):
            os.close(fd)
        self.w, self.r = cmd_w, resp_r
        self.buf, self.next_id, self.events = b"", 0, []

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.r], [], [], left)[0]:
                raise TimeoutError("no answer from chromium")
            chunk = os.read(self.r, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the debugging pipe")
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def send(self, method: str, params: dict | None = None, session: str | None = None, timeout: float = 30) -> dict:
        self.next_id += 1
        msg: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            m = self._read(deadline)
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def wait_event(self, method: str, timeout: float = 30) -> dict:
        deadline = time.monotonic() + timeout
        for m in self.events:
            if m.get("method") == method:
                return m
        while True:
            m = self._read(deadline)
            self.events.append(m)
            if m.get("method") == method:
                return m

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except Exception:  # noqa: BLE001 - the browser may already be gone
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        os.close(self.w)
        os.close(self.r)


def open_in_chromium(html: Path, screenshot: Path, script: str, profile: Path) -> tuple[Any, list[str], list[str]]:
    """Load `html`, run `script` (an expression) in it, screenshot it.

    Returns:
        (value of `script`, console/log errors, URLs of every request the page made).
    """
    dt = DevTools(chromium(), profile)
    try:
        target = dt.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        sid = dt.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page"):
            dt.send(f"{domain}.enable", session=sid)
        dt.send("Page.navigate", {"url": html.resolve().as_uri()}, session=sid)
        dt.wait_event("Page.loadEventFired")
        value = dt.send("Runtime.evaluate", {"expression": script, "returnByValue": True}, session=sid)
        shot = dt.send("Page.captureScreenshot", {"format": "png"}, session=sid)
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        time.sleep(0.2)
        dt.send("Runtime.evaluate", {"expression": "1"}, session=sid)  # flush pending events
    finally:
        dt.close()
    errors, requests = [], []
    for m in dt.events:
        meth, p = m.get("method"), m.get("params", {})
        if meth == "Runtime.exceptionThrown":
            errors.append(json.dumps(p.get("exceptionDetails", {}))[:500])
        elif meth == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert", "warning"):
            errors.append(json.dumps(p.get("args", []))[:500])
        elif meth == "Log.entryAdded" and p.get("entry", {}).get("level") in ("error", "warning"):
            errors.append(p["entry"].get("text", "")[:500])
        elif meth == "Network.requestWillBeSent":
            requests.append(p["request"]["url"])
    if "exceptionDetails" in value:
        errors.append(json.dumps(value["exceptionDetails"])[:500])
    return value.get("result", {}).get("value"), errors, requests


CHECK = """(function(){
  var docs=[].slice.call(document.querySelectorAll('.doc')), out={docs:docs.length, ready:0, coloured:[], inked:[]};
  function change(sel, v){sel.value=v; sel.dispatchEvent(new Event('change'));}
  docs.forEach(function(d){
    if(d.dataset.ready==='1') out.ready++;
    var q=function(c){return d.querySelector('.'+c);};
    change(q('s-mode'),'attention'); change(q('s-layer'),'0'); change(q('s-head'),'1');
    var n=0; d.querySelectorAll('.text .t').forEach(function(s){if(s.style.background)n++;});
    out.coloured.push(n);
    var c=q('heat'), px=c.getContext('2d').getImageData(0,0,c.width,c.height).data, ink=0;
    for(var i=0;i<px.length;i+=4){if(px[i]<250)ink++;}
    out.inked.push(ink);
    change(q('s-mode'),'attribution'); change(q('s-layer'),q('s-layer').options.length-1+'');
  });
  window.scrollTo(0,0);
  return out;})()"""


def _notes_report(tmp_path: Path, tiny_encoder: str) -> Path:
    from transformers import AutoModelForSequenceClassification

    from clinical_ft import encoders
    from clinical_ft.config import DataSpec, TaskCard, TrainConfig
    from clinical_ft.engine import Run
    from clinical_ft.interpret import explain_notes

    model = encoders.load_model(AutoModelForSequenceClassification, tiny_encoder, num_labels=2)
    card = TaskCard(name="synthetic_readmission", version=1, kind="readmission", data=DataSpec(format="csv"),
                    metric="auroc")
    run = Run(tmp_path, card, TrainConfig(max_length=48, stride=12), ["0", "1"], model,
              encoders.load_tokenizer(tiny_encoder))
    note = ("SYNTHETIC NOTE. Pt admitted with CHF exacerbation <script>alert(1)</script> & dyspnea. "
            "Diuresed with IV furosemide; creatinine 1.9. Discharged home on metoprolol, follow-up 2 weeks.\n") * 3
    return explain_notes(run, [("A-1", note), ("A-2", "Short synthetic note: no complaints.")],
                         tmp_path / "report.html", n_steps=8, top_chunks=1)


def test_notes_report_opens_offline_without_errors(browser: str, tiny_encoder: str, tmp_path: Path) -> None:
    html = _notes_report(tmp_path, tiny_encoder)
    shot = Path(os.environ.get("CLINICAL_FT_SCREENSHOT_DIR", tmp_path)) / "report_screenshot.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    value, errors, requests = open_in_chromium(html, shot, CHECK, tmp_path / "profile")
    assert errors == []
    assert [u for u in requests if u != html.resolve().as_uri() and not u.startswith("data:")] == []
    assert value["docs"] == 2 and value["ready"] == 2
    assert all(n > 0 for n in value["coloured"]), value  # attention colours the text spans
    assert all(n > 0 for n in value["inked"]), value  # the heatmap canvas was drawn
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 5000


def test_run_report_opens_offline_without_errors(browser: str, tmp_path: Path) -> None:
    from clinical_ft import cli
    from clinical_ft.config import DataSpec, TaskCard, TrainConfig
    from clinical_ft.interpret.heatmap import heatmap_png
    from clinical_ft.rundir import save_run_file

    run = tmp_path / "run"
    run.mkdir()
    card = TaskCard(name="synthetic", version=1, kind="readmission", data=DataSpec(format="csv", files={"test": "t"}),
                    metric="auroc")
    save_run_file(run, card, TrainConfig(), ["0", "1"])
    (run / "metrics.json").write_text(json.dumps({"train_loss": 0.5, "validation": {"auroc": 0.7}}))
    (run / "curve.png").write_bytes(heatmap_png([("curve", np.eye(3))]))
    out = tmp_path / "run_report.html"
    assert cli.main(["report", "--run", str(run), "--out", str(out)]) == 0
    value, errors, requests = open_in_chromium(out, tmp_path / "run_report.png",
                                               "document.querySelectorAll('img').length", tmp_path / "profile")
    assert errors == [] and value == 1
    assert [u for u in requests if u != out.resolve().as_uri() and not u.startswith("data:")] == []


def _relation_and_qa_reports(tmp_path: Path, tiny_encoder: str) -> list[Path]:
    import torch
    from transformers import AutoModelForQuestionAnswering

    from clinical_ft import encoders, relation
    from clinical_ft.config import DataSpec, TaskCard, TrainConfig
    from clinical_ft.engine import Run
    from clinical_ft.qa import EXTRACTIVE
    from clinical_ft.qa.explain import explain_qa
    from clinical_ft.qa.readers import QAExample
    from clinical_ft.relation.explain import explain_relation
    from clinical_ft.relation.pairs import add_markers

    torch.manual_seed(0)
    cfg = TrainConfig(max_length=32, stride=8)
    labels = ["false", "mechanism", "effect"]
    tok = encoders.load_tokenizer(tiny_encoder)
    add_markers(tok)
    card = TaskCard(name="ddi_mini", version=1, kind="relation", data=DataSpec(format="tsv"), metric="f1")
    rel = Run(tmp_path, card, cfg, labels, relation.TASK.build_model(tiny_encoder, labels, cfg), tok, relation.TASK)
    pairs = [("p1", "Milk and [E1] calcium [/E1] may impair the absorption of [E2] EMCYT [/E2] <script>x</script>."),
             ("p2", "@DRUG$ increases the levels of @DRUG$.")]
    out = [explain_relation(rel, pairs, tmp_path / "relation.html", n_steps=8)]
    card = TaskCard(name="squad_mini", version=1, kind="qa", data=DataSpec(format="squad"), metric="f1")
    qa = Run(tmp_path, card, TrainConfig(max_length=40, stride=8), [],
             encoders.load_model(AutoModelForQuestionAnswering, tiny_encoder), encoders.load_tokenizer(tiny_encoder),
             EXTRACTIVE)
    context = ("SYNTHETIC. Milk and calcium-rich foods may impair the absorption of EMCYT. "
               + "Filler sentence about nothing. " * 6 + "Take it with water.")
    out.append(explain_qa(qa, [QAExample("q1", "What may impair the absorption of EMCYT?", context, None)],
                          tmp_path / "qa.html", n_steps=8))
    return out


def test_relation_and_qa_reports_open_offline_without_errors(browser: str, tiny_encoder: str, tmp_path: Path) -> None:
    shots = Path(os.environ.get("CLINICAL_FT_SCREENSHOT_DIR", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    for html, docs in zip(_relation_and_qa_reports(tmp_path, tiny_encoder), (2, 1)):
        shot = shots / f"{html.stem}_screenshot.png"
        value, errors, requests = open_in_chromium(html, shot, CHECK, tmp_path / f"profile_{html.stem}")
        assert errors == [], html.name
        assert [u for u in requests if u != html.resolve().as_uri() and not u.startswith("data:")] == []
        assert value["docs"] == docs and value["ready"] == docs, value
        assert all(n > 0 for n in value["coloured"]) and all(n > 0 for n in value["inked"]), value
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 5000


def test_run_report_with_example_explanations_opens_offline(browser: str, tiny_encoder: str, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import csv

    from transformers import AutoModelForSequenceClassification

    from clinical_ft import cli, encoders, engine
    from clinical_ft.config import TaskCard, TrainConfig, load
    from clinical_ft.rundir import save_run_file

    fix = Path(__file__).parent / "fixtures"
    run = tmp_path / "run"
    card = load(TaskCard, fix / "readmission" / "notes_mini.yaml")
    encoders.load_model(AutoModelForSequenceClassification, tiny_encoder, num_labels=2).save_pretrained(run)
    encoders.load_tokenizer(tiny_encoder).save_pretrained(run)
    save_run_file(run, card, TrainConfig(max_length=48, stride=12), list(card.labels))
    with (fix / "readmission" / "notes_mini" / "test.csv").open(encoding="utf-8", newline="") as fh:
        ids = [r["admission_id"] for r in csv.DictReader(fh)]
    engine.write_predictions(run / "predictions_test.jsonl", [  # as every task's evaluate writes them
        {"risk": k / len(ids), "n_chunks": 1, "top_chunk_start": 0, "top_chunk_end": 9, "top_chunk_prob": 0.5}
        for k, _ in enumerate(ids)])
    (run / "notes_report.html").write_text("<!DOCTYPE html><title>x</title>", encoding="utf-8")
    monkeypatch.setenv("CLINICAL_FT_DATA", str(fix))
    out = tmp_path / "run_report.html"
    assert cli.main(["report", "--run", str(run), "--out", str(out)]) == 0
    value, errors, requests = open_in_chromium(out, tmp_path / "run_report_examples.png", CHECK, tmp_path / "profile")
    assert errors == []
    assert [u for u in requests if u != out.resolve().as_uri() and not u.startswith("data:")] == []
    assert value["docs"] == 2 and value["ready"] == 2 and all(n > 0 for n in value["coloured"]), value
