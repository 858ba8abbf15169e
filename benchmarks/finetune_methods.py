"""Fine-tuning methods on one task card (default NCBI-disease NER), one table from one run: full fine-tuning, partial
(frozen embeddings + bottom layers), head-only, BitFit, LoRA, IA3, prefix and prompt tuning (QLoRA: GPU only, listed,
not run on CPU), the trivial baseline (always-O / always-positive), and (rows 4/5) domain-adaptive pre-training (DAPT,
``python -m clinical_ft.pretrain``) followed by full fine-tuning, all from the bundled MiniLM-L6.

Forgetting: the encoder's masked-LM loss on a fixed held-out text (the contexts of the first 64 PubMedQA PQA-L
test-split questions by PMID: biomedical abstracts that neither NCBI-disease nor GAD trains on) before and after
fine-tuning, with one frozen MLM head (clinical_ft.pretrain.forgetting; the MiniLM ships no MLM head, so one is fitted
once on the frozen pre-trained encoder from 300 other PubMedQA contexts and cached under --work). A DAPT row is marked:
its pre-training corpus contains the held-out text.

Every row is the public CLI in its own subprocesses: ``python -m clinical_ft.<card kind> train`` (its
metrics.json gives trainable parameters, seconds per optimisation step, training tokens/s and the
training process's peak RSS) then ``evaluate --split test`` (the full NCBI test split). The DAPT
encoder is pre-trained in the same run on non-test in-domain text (BC5CDR-chem train sentences,
PubMedQA PQA-L contexts, MTSamples notes) with ``--exclude-card ner/ncbi_disease``. Throughput is
reported as a ratio to the full fine-tuning row measured in the same run (absolute times on a
shared CPU are noise).

Runs (finetune_methods_all.md and finetune_methods_all_gad.md, every method at one budget):
    python benchmarks/finetune_methods.py --max-train 1000 --epochs 1 --tag finetune_methods_all
    python benchmarks/finetune_methods.py --card tasks/relation/gad.yaml --max-train 1000 --epochs 1 \
        --tag finetune_methods_all_gad
Earlier runs (finetune_methods.md, finetune_methods_lora_lr.md, finetune_methods_gad.md; no forgetting column then):
    python benchmarks/finetune_methods.py --max-train 1000 --epochs 2 --dapt-steps 50
    python benchmarks/finetune_methods.py --max-train 1000 --epochs 2 --rows 0,2,5 --tag finetune_methods_lora_lr \
        --work /tmp/clinical_ft_finetune_methods_b
    python benchmarks/finetune_methods.py --card tasks/relation/gad.yaml --max-train 1000 --epochs 2 \
        --rows 0,1,2,5,4 --dapt-steps 50 --tag finetune_methods_gad --work /tmp/clinical_ft_finetune_methods_gad
Smoke test (tiny data, minutes):
    python benchmarks/finetune_methods.py --card tests/fixtures/ncbi_mini.yaml --data-dir tests/fixtures \\
        --max-train 20 --dapt-steps 1 --results /tmp/fm_smoke
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
from common import machine, now_utc, run_measured, write_json, write_text  # noqa: E402

CONFIG = "configs/{kind}/minilm.yaml"  # shipped config (batch overridden below), max_length 128
# (row name, config overrides, uses the DAPT encoder)
ROWS: list[tuple[str, list[str], bool]] = [
    ("full", [], False),
    ("partial: frozen embeddings + layers 0-3 of 6", ["method=partial", "freeze_embeddings=true", "freeze_layers=4"], False),
    ("head_only (lr 1e-3)", ["method=head_only", "learning_rate=1e-3"], False),
    ("lora r=8 alpha=16 query+value (lr 5e-4)", ["method=lora", "lora_r=8", "lora_alpha=16", "learning_rate=5e-4"], False),
    ("DAPT MiniLM, then full", [], True),
    ("lora r=8 alpha=16 query+value (lr 2e-3)", ["method=lora", "lora_r=8", "lora_alpha=16", "learning_rate=2e-3"], False),
    ("bitfit (lr 1e-3)", ["method=bitfit", "learning_rate=1e-3"], False),
    ("ia3 key+value+output.dense (lr 5e-3)", ["method=ia3", "learning_rate=5e-3"], False),
    ("prefix, 20 virtual tokens (lr 5e-3)", ["method=prefix", "num_virtual_tokens=20", "learning_rate=5e-3"], False),
    ("prompt, 20 virtual tokens (lr 3e-2)", ["method=prompt", "num_virtual_tokens=20", "learning_rate=3e-2"], False),
]
NOT_RUN = [("qlora r=8 (LoRA on a 4-bit NF4 base)", "GPU only (bitsandbytes 4-bit); not run on this CPU machine")]
HELDOUT = ("pubmedqa/ori_pqal.json", "pubmedqa/test_ground_truth.json", 64, 300)  # file, test ids, held-out, fit texts
DAPT_TEXT = ["bc5cdr_chem/train.tsv", "pubmedqa/ori_pqal.json", "mtsamples_subset/mtsamples_subset.csv"]


def _py(*args: str) -> list[str]:
    return [sys.executable, *args]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--card", default="tasks/ner/ncbi_disease.yaml")
    p.add_argument("--data-dir", default=None, help="root of the card's data (default: clinical_ft's data root)")
    p.add_argument("--encoder", default="minilm")
    p.add_argument("--max-train", type=int, default=1000, help="training sentences (budget for 2 shared CPU cores)")
    p.add_argument("--epochs", type=float, default=2.0)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--dapt-steps", type=int, default=50)
    p.add_argument("--dapt-batch", type=int, default=16)
    p.add_argument("--work", default="/tmp/clinical_ft_finetune_methods", help="run directories (not committed)")
    p.add_argument("--results", default=str(HERE / "results"))
    p.add_argument("--rows", default="0,1,2,6,5,7,8,9", help="indices into ROWS to run (0 = full, the reference)")
    p.add_argument("--no-forgetting", action="store_true", help="skip the held-out MLM loss")
    p.add_argument("--tag", default="finetune_methods", help="results file name (without suffix)")
    args = p.parse_args(argv)
    selected = [(i, ROWS[i]) for i in map(int, args.rows.split(","))]

    from clinical_ft.registry import load_card
    from clinical_ft.resources import data_root

    card = load_card(args.card)
    module, config = f"clinical_ft.{card.kind}", CONFIG.format(kind=card.kind)
    shared = data_root()
    work, results = Path(args.work), Path(args.results)
    work.mkdir(parents=True, exist_ok=True)
    data = ["--data-dir", args.data_dir] if args.data_dir else []
    info: dict[str, Any] = {"date": now_utc(), "machine": machine(), "command": "python " + shlex.join(sys.argv),
                            "card": card.name, "kind": card.kind, "config": config,
                            "budget": {"max_train_examples": args.max_train, "epochs": args.epochs, "batch": args.batch,
                                       "dapt_steps": args.dapt_steps, "dapt_batch": args.dapt_batch}}

    dapt = work / "minilm-dapt"
    info["dapt"] = None
    cmd = _py("-m", "clinical_ft.pretrain", "--encoder", args.encoder, "--out", str(dapt), "--overwrite",
              "--max-steps", str(args.dapt_steps), "--batch-size", str(args.dapt_batch), "--max-length", "128",
              "--whole-word-masking", "--learning-rate", "1e-4", "--text-column", "transcription",
              "--exclude-card", args.card, *data, *[a for t in DAPT_TEXT for a in ("--text", str(shared / t))])
    if any(use for _, (_, _, use) in selected):
        info["dapt"] = {"command": shlex.join(cmd[1:]), **run_measured(cmd, work / "dapt.log")}
        if info["dapt"]["rc"] != 0:
            print(f"DAPT failed, see {work / 'dapt.log'}", file=sys.stderr)
            return 1
        info["dapt"]["metrics"] = json.loads((dapt / "pretrain_metrics.json").read_text())

    mlm, heldout = (None, None) if args.no_forgetting else _forgetting_setup(args.encoder, shared, work, info)
    info["trivial"] = _trivial(card, module, args.data_dir)
    rows = []
    for i, (name, over, use_dapt) in selected:
        out = work / f"row{i}"
        enc = str(dapt) if use_dapt else args.encoder
        train = _py("-m", module, "train", "--card", args.card, "--config", config, "--out", str(out),
                    "--overwrite", "--encoder", enc, *data, f"max_train_examples={args.max_train}",
                    f"num_train_epochs={args.epochs}", f"per_device_train_batch_size={args.batch}",
                    "eval_strategy=no", *over)
        print(f"[row {i}] {name}", flush=True)
        tr = run_measured(train, work / f"row{i}_train.log")
        ev = run_measured(_py("-m", module, "evaluate", "--model", str(out), "--split", "test", *data),
                          work / f"row{i}_eval.log") if tr["rc"] == 0 else {"rc": None}
        row: dict[str, Any] = {"name": name, "train_command": shlex.join(train[1:]), "train": tr, "eval": ev}
        if tr["rc"] == 0 and ev["rc"] == 0:
            row["metrics"] = json.loads((out / "metrics.json").read_text())
            row["test"] = json.loads((out / "eval_test.json").read_text())
            if mlm is not None:
                from clinical_ft.pretrain import forgetting

                row["mlm_loss_after"] = forgetting.mlm_loss(forgetting.load_encoder(mlm, out), heldout)
                row["heldout_in_pretraining"] = use_dapt
        rows.append(row)
        info["rows"] = rows  # written after every row: an interrupted run keeps the rows it finished
        write_json(results / f"{args.tag}.json", info)
        write_text(results / f"{args.tag}.md", _markdown(info))
    print((results / f"{args.tag}.md").read_text())
    return 0 if all("test" in r for r in rows) else 1


def _forgetting_setup(encoder: str, shared: Path, work: Path, info: dict[str, Any]) -> tuple[Any, Any]:
    """The frozen MLM model and the masked held-out batch; records the loss before fine-tuning."""
    from clinical_ft import encoders
    from clinical_ft.pretrain import forgetting

    file, test_ids, n_held, n_fit = HELDOUT
    qa = json.loads((shared / file).read_text())
    test = set(json.loads((shared / test_ids).read_text()))
    held = [" ".join(qa[k]["CONTEXTS"]) for k in sorted(test)][:n_held]
    fit = [" ".join(qa[k]["CONTEXTS"]) for k in sorted(qa) if k not in test][:n_fit]
    mlm, note = forgetting.fit_head(encoder, fit, work / "mlm_head", steps=300)
    batch = forgetting.masked_batch(encoders.load_tokenizer(encoder), held, 128, seed=0)
    info["forgetting"] = {"heldout": f"contexts of the first {n_held} PubMedQA PQA-L test questions (sorted PMID)",
                          "masked_tokens": int((batch["labels"] != -100).sum()), "head": note,
                          "mlm_loss_before": forgetting.mlm_loss(mlm, batch)}
    return mlm, batch


def _trivial(card: Any, module: str, data_dir: str | None) -> dict[str, Any]:
    """Test scores of the constant prediction: every word O (NER), every pair positive (relation)."""
    import importlib

    task = importlib.import_module(module).TASK
    test = task.load_split(card, "test", data_dir)
    if card.kind == "ner":
        return {"name": "always O", **task.score(test, [["O"] * len(s.words) for s in test], ["O"])}
    from clinical_ft.relation.task import positive_labels

    labels = task.label_list(card, task.load_split(card, "train", data_dir))
    pos = positive_labels(labels)[0]
    return {"name": f"always {pos!r} (positive)", **task.score(test, [(pos, 1.0)] * len(test), labels)}


def _markdown(info: dict[str, Any]) -> str:
    b, d = info["budget"], info["dapt"]
    full = next((r for r in info["rows"] if "metrics" in r and r["name"] == "full"), None)
    n_test = next((r["test"]["examples"] for r in info["rows"] if "test" in r), "?")
    ref_tps = full["metrics"]["train_tokens_per_second"] if full else None
    ref_params = full["metrics"]["trainable_parameters"] if full else None
    lines = [
        f"# Fine-tuning methods on {info.get('card', 'ncbi_disease')} (bundled MiniLM-L6), one run",
        "",
        f"{info['date']}; {info['machine']['nproc']} CPU cores shared with other jobs (load average at start "
        f"{info['machine']['loadavg'][0]:.1f}); torch {info['machine']['torch']}, transformers {info['machine']['transformers']}.",
        f"Command: `{info['command']}`",
        "",
        f"**Budget (LIMITED, not comparable with full-data results):** first {b['max_train_examples']} "
        f"{info.get('card', 'ncbi_disease')} training examples, {b['epochs']:g} epoch(s), batch {b['batch']}, max_length 128, "
        f"no dev evaluation or early stopping, seed 42; scored on the full test split ({n_test} examples, "
        f"{'entity-level seqeval F1' if info.get('kind', 'ner') == 'ner' else 'the card metric: F1 of the positive class(es)'}).",
        (f"DAPT: {(dm := d['metrics'])['max_steps']} MLM steps x batch {dm['batch_size']} x {dm['max_length']} tokens (~{dm['tokens_seen']:,} "
        f"tokens, whole-word masking, lr {dm['learning_rate']}) on {dm['documents']:,} documents "
        f"({dm['blocks_train']:,} blocks) of BC5CDR-chem train + PubMedQA PQA-L contexts + MTSamples, {info.get('card', 'ncbi_disease')} test excluded "
        f"(--exclude-card); {d['wall_s']:.0f} s wall. Held-out MLM loss {dm['heldout_mlm_loss_before']:.2f} -> "
        f"{dm['heldout_mlm_loss_after']:.2f} (the MiniLM has no MLM head: the 'before' loss is that of a freshly initialised head).") if d else "No DAPT row in this run.",
        "",
        _forgetting_line(info),
        "",
        "| method | trainable params | % of full | test F1 | P | R | s/step | train tokens/s | x full | train peak RSS MB "
        "| held-out MLM loss after (change) | load avg at start |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    if info.get("trivial"):
        t = info["trivial"]
        lines.append(f"| trivial baseline: {t['name']} | 0 | 0.0 | {t['f1']:.3f} | {t['precision']:.3f} | {t['recall']:.3f} "
                     "| | | | | | |")
    for r in info["rows"]:
        if "metrics" not in r:
            lines.append(f"| {r['name']} | no result: train exit code {r['train'].get('rc')}, log {r['train'].get('log')} "
                         "| | | | | | | | | | |")
            continue
        m, t = r["metrics"], r["test"]
        tps = m["train_tokens_per_second"]
        lines.append(
            f"| {r['name']} | {m['trainable_parameters']:,} | {100 * m['trainable_parameters'] / ref_params:.1f} | "
            f"{t['f1']:.3f} | {t['precision']:.3f} | {t['recall']:.3f} | {m['seconds_per_step']:.2f} | {tps:.0f} | "
            f"{tps / ref_tps:.2f} | {m['peak_memory_mb']:.0f} | {_forgot(info, r)} | {r['train']['loadavg_before'][0]:.1f} |")
    lines += [f"| {name} | {why} | | | | | | | | | | |" for name, why in NOT_RUN]
    lines += [
        "",
        "- trainable params: `metrics.json` of each run (LoRA: adapters + the trained copy of the classifier).",
        "- s/step: mean wall time of an optimisation step (forward, backward, optimizer), evaluation excluded;",
        "  tokens/s: training tokens x epochs / training wall time; x full: ratio to the `full` row of this run.",
        "- peak RSS: the training process's maximum resident memory (CPU; on GPU the engine reports peak CUDA memory).",
        "- load avg at start: 1-minute load average of this shared 2-core machine when the row's training began;",
        "  rows that started under very different load are not comparable in speed, whatever the ratio says.",
        "- held-out MLM loss: see the Forgetting line above; change = after - before (0 when the encoder's weights",
        "  did not move: head_only, prefix, prompt keep the pre-trained encoder and add their own parameters).",
        "- Exact commands of every row are in the JSON file next to this one.",
    ]
    return "\n".join(lines) + "\n"


def _forgetting_line(info: dict[str, Any]) -> str:
    f = info.get("forgetting")
    if not f:
        return "No forgetting measurement in this run."
    return (f"**Forgetting:** masked-LM loss of the encoder on {f['heldout']} ({f['masked_tokens']:,} masked tokens, fixed "
            f"seed), with one frozen MLM head ({f['head']}); before fine-tuning: {f['mlm_loss_before']:.3f}.")


def _forgot(info: dict[str, Any], r: dict[str, Any]) -> str:
    if "mlm_loss_after" not in r:
        return ""
    after = r["mlm_loss_after"]
    note = " (held-out text was in its DAPT corpus)" if r.get("heldout_in_pretraining") else ""
    return f"{after:.3f} ({after - info['forgetting']['mlm_loss_before']:+.3f}){note}"


if __name__ == "__main__":
    raise SystemExit(main())
