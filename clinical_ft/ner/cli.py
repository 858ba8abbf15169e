"""``python -m clinical_ft.ner train|evaluate|predict|explain``: named-entity recognition, BIO tagging
with entity-level seqeval P/R/F1."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Any

from .. import engine, taskcli
from ..atomic import atomic_open
from ..errors import ClinicalFTError, InputError
from ..interpret.cli import add_common_args, check_steps, read_lines
from ..trainer import is_main_process
from .conll import Sentence, read_conll, typed, write_conll
from .task import TASK, repair_note


def raw_text_sentences(path: str | Path, tokenizer: Any) -> tuple[list[Sentence], list[list[tuple[int, int]]], list[str]]:
    """One document per line of a UTF-8 text file, split into words with character offsets
    by the encoder's own pre-tokenizer. Blank lines are kept as documents with no words."""
    path = Path(path)
    texts = []
    for ln, bline in enumerate(path.read_bytes().split(b"\n"), start=1):
        try:
            texts.append(bline.decode("utf-8").rstrip("\r"))
        except UnicodeDecodeError as exc:
            raise InputError(path, ln, "UTF-8 text", f"byte 0x{bline[exc.start]:02x}") from None
    if texts and texts[-1] == "":
        texts.pop()
    pre = tokenizer.backend_tokenizer.pre_tokenizer
    sents, spans = [], []
    for ln, text in enumerate(texts, start=1):
        pieces = pre.pre_tokenize_str(text)
        sents.append(Sentence([w for w, _ in pieces], None, str(path), ln, f"{path.name}:{ln}"))
        spans.append([tuple(o) for _, o in pieces])
    return sents, spans, texts


def predict(run: engine.Run, sentences: list[Sentence]) -> list[list[str]]:
    """Tags for every word of every sentence (empty sentences get empty tag lists). Gold tags, if
    any, are ignored: a tag column with tags the model does not know is no reason to refuse input."""
    idx = [i for i, s in enumerate(sentences) if s.words]
    tags = engine.predict(TASK, run, [dataclasses.replace(sentences[i], tags=None) for i in idx])
    out: list[list[str]] = [[] for _ in sentences]
    for i, t in zip(idx, tags):
        out[i] = t
    return out


def _predict(args: argparse.Namespace) -> int:
    from seqeval.metrics.sequence_labeling import get_entities

    _, run = taskcli.open_run(args.model, (TASK,))
    inp = Path(args.input)
    fmt = args.format or ("text" if inp.suffix in (".txt", ".text") else "conll")
    if fmt == "conll":
        sents, report = read_conll(inp, require_tags=False)
        tags = predict(run, sents)
        if not is_main_process():  # torchrun: every rank scored its share, rank 0 writes
            return 0
        write_conll(args.out, sents, tags)  # every input line kept, the prediction appended as a last column
        print(f"{report.sentences} sentences, {report.tokens} tokens tagged -> {args.out}")
        if report.iob_repairs:  # the output keeps the input's tags as written
            print(repair_note(inp, report.iob_repairs))
        return 0
    sents, spans, texts = raw_text_sentences(inp, run.tokenizer)
    tags = predict(run, sents)
    if not is_main_process():
        return 0
    with atomic_open(args.out) as fh:
        for sent, sp, text, tg in zip(sents, spans, texts, tags):
            ents = []
            for typ, a, b in get_entities([typed(t) for t in tg]):
                start, end = sp[a][0], sp[b][1]
                ents.append({"type": typ, "start": start, "end": end, "text": text[start:end]})
            fh.write(json.dumps({"line": sent.line, "entities": ents,
                                 "tokens": [[s, e, t] for (s, e), t in zip(sp, tg)]}) + "\n")
    print(f"{len(sents)} documents, {sum(len(s.words) for s in sents)} tokens tagged -> {args.out}")
    return 0


def _explain(args: argparse.Namespace) -> int:
    from .explain import explain_ner

    check_steps(args)
    docs, blank = ([("text", args.text)], 0) if args.text is not None else read_lines(args.input)
    if not docs:
        raise ClinicalFTError(f"{args.input}: no non-blank line to explain")
    _, run = taskcli.open_run(args.model, (TASK,))
    out = explain_ner(run, docs, args.out, attributions=not args.no_attributions, n_steps=args.n_steps,
                      tolerance=args.tolerance, max_entities=args.max_entities)
    skipped = f" ({blank} blank line(s) skipped)" if blank else ""
    print(f"{len(docs)} document(s) explained{skipped} -> {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p, sub = taskcli.parser("python -m clinical_ft.ner", __doc__ or "")
    pr = sub.add_parser("predict", help="tag a CoNLL file (every line kept, prediction appended as the last "
                                         "column) or raw text (one document per line)")
    pr.add_argument("--model", required=True, help="run directory written by train")
    pr.add_argument("--input", required=True, help="CoNLL file (token[<TAB>tag] lines) or .txt, one document per line")
    pr.add_argument("--out", required=True, help="CoNLL output, or JSON lines with entities and offsets for text")
    pr.add_argument("--format", choices=["conll", "text"], help="input format (default: by file suffix)")
    ex = sub.add_parser("explain", help="HTML report: predicted entities, their attributions and attention")
    ex.add_argument("--model", required=True, help="NER run directory written by train")
    src = ex.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", help="text to explain")
    src.add_argument("--input", help="UTF-8 text file, one document per line")
    ex.add_argument("--out", required=True, help="HTML report to write (PNG heatmaps go beside it)")
    ex.add_argument("--max-entities", type=int, default=20, help="entities attributed per document (default 20)")
    add_common_args(ex)
    return taskcli.run((TASK,), p, argv, {"predict": _predict, "explain": _explain})


if __name__ == "__main__":
    raise SystemExit(main())
