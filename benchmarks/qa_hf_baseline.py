"""Reference QA fine-tuning with a plain `transformers.Trainer`, set up as Hugging Face's examples do.

Extractive (``examples/pytorch/question-answering/run_qa.py`` + ``utils_qa.py``):
- ``tokenizer(question, context, truncation="only_second", max_length=384, stride=128,
  return_overflowing_tokens=True, return_offsets_mapping=True, padding="max_length")``
  (pad_to_max_length defaults to True in run_qa);
- training labels: the answer's first/last token when the window holds the whole answer, else the
  [CLS] index; ``default_data_collator``;
- post-processing: ``postprocess_qa_predictions`` (top-20 start/end logits per window, spans outside the
  context / end < start / longer than 30 tokens dropped, score = start + end logit, ranked across
  windows, best answer = first).
- ONE deviation, stated in the results: windows without the answer are subsampled with the same
  fraction and seed as the clinical_ft run (run_qa keeps them all) so both sides see the same data
  on this CPU budget.

Yes/no (``examples/pytorch/text-classification/run_glue.py``): ``tokenizer(question, context,
truncation=True, max_length=384, padding="max_length")`` (text past 384 tokens is cut; run_glue does
not window), ``AutoModelForSequenceClassification``, argmax.

Both: TrainingArguments defaults (no warmup, no weight decay, linear decay) except learning rate,
batch size and epochs, which are set equal to the clinical_ft run. Scores use the same metric
functions as clinical_ft (SQuAD EM/F1; sklearn accuracy / macro-F1), so only the pipelines differ.
It does not use clinical_ft's engine; it reads the data with clinical_ft's readers only so both
sides see exactly the same examples.
"""

from __future__ import annotations

import collections
import random
import time
from typing import Any

import numpy as np


def _args(out: str, lr: float, batch: int, epochs: float, seed: int) -> Any:
    from transformers import TrainingArguments

    return TrainingArguments(output_dir=out, learning_rate=lr, per_device_train_batch_size=batch,
                             per_device_eval_batch_size=64, num_train_epochs=epochs, seed=seed,
                             report_to=[], save_strategy="no", logging_steps=50, disable_tqdm=True)


def extractive(encoder: str, train: list[Any], test: list[Any], out: str, *, lr: float, batch: int, epochs: float,
               seed: int, negative_fraction: float, max_length: int = 384, stride: int = 128) -> dict[str, Any]:
    """Train on `train` QAExamples, predict `test`; return best answers and timing."""
    from datasets import Dataset
    from transformers import (
        AutoModelForQuestionAnswering,
        AutoTokenizer,
        Trainer,
        default_data_collator,
        set_seed,
    )

    set_seed(seed)
    tok = AutoTokenizer.from_pretrained(encoder)
    model = AutoModelForQuestionAnswering.from_pretrained(encoder)

    def features(examples: list[Any]) -> Any:
        return tok([e.question for e in examples], [e.context for e in examples], truncation="only_second",
                   max_length=max_length, stride=stride, return_overflowing_tokens=True,
                   return_offsets_mapping=True, padding="max_length")

    enc = features(train)
    rng = random.Random(seed)
    rows: dict[str, list] = {"input_ids": [], "token_type_ids": [], "attention_mask": [], "start_positions": [], "end_positions": []}
    for i, offsets in enumerate(enc["offset_mapping"]):  # run_qa prepare_train_features
        ids = enc["input_ids"][i]
        cls = ids.index(tok.cls_token_id)
        seq = enc.sequence_ids(i)
        ex = train[enc["overflow_to_sample_mapping"][i]]
        text, start_char = ex.answers[0]
        end_char = start_char + len(text)
        ts = 0
        while seq[ts] != 1:
            ts += 1
        te = len(ids) - 1
        while seq[te] != 1:
            te -= 1
        if not (offsets[ts][0] <= start_char and offsets[te][1] >= end_char):
            s = e = cls
            if rng.random() >= negative_fraction:
                continue
        else:
            while ts < len(offsets) and offsets[ts][0] <= start_char:
                ts += 1
            s = ts - 1
            while offsets[te][1] >= end_char:
                te -= 1
            e = te + 1
        for k in ("input_ids", "token_type_ids", "attention_mask"):
            rows[k].append(enc[k][i])
        rows["start_positions"].append(s)
        rows["end_positions"].append(e)
    trainer = Trainer(model=model, args=_args(out, lr, batch, epochs, seed), train_dataset=Dataset.from_dict(rows),
                      data_collator=default_data_collator, processing_class=tok)
    t0 = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    ev = features(test)  # run_qa prepare_validation_features: offsets outside the context -> None
    offs = [[o if s == 1 else None for o, s in zip(ev["offset_mapping"][i], ev.sequence_ids(i))] for i in range(len(ev["input_ids"]))]
    ds = Dataset.from_dict({k: ev[k] for k in ("input_ids", "token_type_ids", "attention_mask")})
    start_logits, end_logits = trainer.predict(ds).predictions[:2]
    per_example = collections.defaultdict(list)
    for i, ex_i in enumerate(ev["overflow_to_sample_mapping"]):
        per_example[ex_i].append(i)
    answers = []
    for ex_i, ex in enumerate(test):  # utils_qa postprocess_qa_predictions (version_2_with_negative False)
        prelim = []
        for f in per_example[ex_i]:
            sl, el, om = start_logits[f], end_logits[f], offs[f]
            for s in np.argsort(sl)[-1:-21:-1].tolist():
                for e in np.argsort(el)[-1:-21:-1].tolist():
                    if s >= len(om) or e >= len(om) or om[s] is None or om[e] is None:
                        continue
                    if e < s or e - s + 1 > 30:
                        continue
                    prelim.append((float(sl[s] + el[e]), om[s][0], om[e][1]))
        best = max(prelim) if prelim else (0.0, 0, 0)
        answers.append(ex.context[best[1]:best[2]])
    return {"answers": answers, "train_seconds": train_s, "predict_seconds": time.perf_counter() - t0,
            "train_features": len(rows["input_ids"]), "test_features": len(ev["input_ids"])}


def yesno(encoder: str, train: list[Any], test: list[Any], labels: list[str], out: str, *, lr: float, batch: int,
          epochs: float, seed: int, max_length: int = 384) -> dict[str, Any]:
    """run_glue-style pair classification, truncated at `max_length`; return predicted labels and timing."""
    from datasets import Dataset
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        Trainer,
        default_data_collator,
        set_seed,
    )

    set_seed(seed)
    tok = AutoTokenizer.from_pretrained(encoder)
    model = AutoModelForSequenceClassification.from_pretrained(encoder, num_labels=len(labels))
    l2i = {t: i for i, t in enumerate(labels)}

    def ds(items: list[Any], with_labels: bool) -> Any:
        enc = tok([x.question for x in items], [x.context for x in items], truncation=True, max_length=max_length,
                  padding="max_length")
        cols = {k: enc[k] for k in ("input_ids", "token_type_ids", "attention_mask")}
        if with_labels:
            cols["labels"] = [l2i[x.label] for x in items]
        return Dataset.from_dict(cols)

    trainer = Trainer(model=model, args=_args(out, lr, batch, epochs, seed), train_dataset=ds(train, True),
                      data_collator=default_data_collator, processing_class=tok)
    t0 = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    logits = trainer.predict(ds(test, False)).predictions
    pred = [labels[i] for i in np.asarray(logits).argmax(-1)]
    return {"labels": pred, "train_seconds": train_s, "predict_seconds": time.perf_counter() - t0,
            "train_features": len(train), "test_features": len(test)}
