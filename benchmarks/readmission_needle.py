"""Needle experiment: notes whose deciding content lies beyond token 512. Truncation vs chunking.

SYNTHETIC notes (clinical_ft.readmission.synthetic with ``late_fraction=1``): every risk or
reassurance sentence sits after the first ~450 words; only notes whose first cue starts after
token 512 (checked with the run's tokenizer) are scored. One trained run scores each note twice:

- truncation: only the note's first 512 tokens are given to the model (what a model limited to one
  512-token input sees; ClinicalBERT-style truncation), windows of the run's max_length inside them;
- chunked: every window of the whole note, aggregated with the run's aggregation.

Train a run first, e.g. with the demo (its training notes put the cues anywhere, half of them late only):

    python -m clinical_ft.readmission demo --out readmission_demo
    OMP_NUM_THREADS=2 python benchmarks/readmission_needle.py --model readmission_demo/run \
        --patients 120 --out benchmarks/readmission_needle.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path


def first_cue_token(tokenizer, text: str, cues: list[str]) -> int | None:
    """Token index (specials excluded) where the first cue sentence starts; None if no cue."""
    pos = [text.find(c.lower()) for c in cues]
    pos = [p for p in pos if p >= 0]
    if not pos:
        return None
    return len(tokenizer(text[:min(pos)], add_special_tokens=False)["input_ids"])


def truncate(tokenizer, text: str, n_tokens: int = 510) -> str:
    """The note cut after its first `n_tokens` tokens (512 with [CLS] and [SEP])."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    offs = enc["offset_mapping"]
    return text if len(offs) <= n_tokens else text[:offs[n_tokens - 1][1]]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="a trained readmission run directory")
    p.add_argument("--patients", type=int, default=120)
    p.add_argument("--words", type=int, default=400, help="words per synthetic discharge summary")
    p.add_argument("--seed", type=int, default=7, help="synthetic seed (the demo trains on seed 0)")
    p.add_argument("--out", default="benchmarks/readmission_needle.json")
    args = p.parse_args(argv)

    from clinical_ft import engine
    from clinical_ft.readmission import synthetic
    from clinical_ft.readmission.metrics import readmission_metrics
    from clinical_ft.readmission.mimic import build_from_mimic
    from clinical_ft.readmission.notes import Note
    from clinical_ft.readmission.task import TASK

    run = engine.load_run(TASK, args.model)
    tok = run.tokenizer
    with tempfile.TemporaryDirectory() as d:
        synthetic.generate(d, args.patients, seed=args.seed, words=args.words, late_fraction=1.0)
        df = build_from_mimic(d)
    cues = synthetic.RISK + synthetic.CALM
    notes, firsts = [], []
    for r in df.itertuples():
        first = first_cue_token(tok, r.text, cues)
        if first is not None and first >= 512:
            notes.append(Note(str(r.admission_id), r.text, int(r.label), len(notes) + 1))
            firsts.append(first)
    y = [n.label for n in notes]
    chunked = engine.predict(TASK, run, notes)
    cut = [Note(n.id, truncate(tok, n.text), n.label, n.row) for n in notes]
    truncated = engine.predict(TASK, run, cut)
    res = {
        "command": "python benchmarks/readmission_needle.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "model": str(Path(args.model)), "encoder": run.cfg.encoder, "max_length": run.cfg.max_length,
        "stride": run.cfg.stride, "aggregation": run.cfg.aggregation,
        "admissions_generated": len(df), "admissions_with_all_cues_beyond_token_512": len(notes),
        "min_first_cue_token": min(firsts) if firsts else None,
        "median_note_tokens": sorted(len(tok(n.text, add_special_tokens=False)["input_ids"]) for n in notes)[len(notes) // 2]
        if notes else None,
        "truncation_first_512_tokens": readmission_metrics(y, [r["risk"] for r in truncated]),
        "chunked_aggregation": readmission_metrics(y, [r["risk"] for r in chunked]),
    }
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
