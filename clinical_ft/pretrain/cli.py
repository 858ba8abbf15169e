"""Domain-adaptive pre-training (the BioBERT recipe): continue masked-language-model training of a
BERT-family encoder on in-domain text, producing an encoder directory that every task accepts as
``--encoder``. Run as::

    python -m clinical_ft.pretrain --encoder minilm --text corpus/ --out encoders/minilm-bio \\
        --max-steps 500 --max-length 128 --whole-word-masking --exclude-card ner/ncbi_disease

Text sources (files, or folders searched recursively): ``.txt`` one document per line, CoNLL
``.tsv``/``.conll``/``.iob``, SQuAD or PubMedQA ``.json`` contexts, the ``--text-column`` of a ``.csv``,
DDI-2013 ``.xml``/``.zip`` (one document per sentence); details in text.py.
Documents are tokenized with special tokens, concatenated and cut into ``max_length`` blocks
(transformers' run_mlm recipe).

``--exclude-card`` drops every document holding a sentence of that card's test split, as the card's
task reads the split (its examples' texts: PubMedQA contexts, the DDI test part, the held-out
COVID-QA articles), and refuses a source that is the test file itself, unless that file also holds
the training split (COVID-QA, the DDI zip: then only its test text is dropped). The output's
``pretraining_manifest.json`` (source sha256s and hashes of every document/sentence used, see
leakage.py) lets training and evaluation refuse any benchmark whose test text was pre-trained on.
An encoder without an MLM head (the bundled MiniLM is a bare BertModel) gets one initialised here,
its decoder tied to the input embeddings; the base checkpoint's pooler, which masked-LM models do
not carry, is copied into the output so sequence-classification heads keep it. README.md says both.
"""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import ClinicalFTError
from ..taskcli import setup_logging
from .mlm import pretrain


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m clinical_ft.pretrain", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--encoder", default="minilm", help="alias, Hugging Face id or local directory (default minilm)")
    p.add_argument("--text", action="append", required=True, help="text file or folder (repeatable)")
    p.add_argument("--out", required=True, help="encoder directory to write")
    p.add_argument("--max-steps", type=int, default=500)
    p.add_argument("--max-length", type=int, default=128, help="tokens per block, special tokens included")
    p.add_argument("--whole-word-masking", action="store_true", help="mask all subwords of a chosen word")
    p.add_argument("--mlm-probability", type=float, default=0.15)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--learning-rate", type=float, default=5e-5)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--text-column", default="text", help="column of .csv sources holding the text (default text)")
    p.add_argument("--exclude-card", action="append", default=[], help="card whose test split must not be pre-trained on (repeatable)")
    p.add_argument("--data-dir", help="root for the excluded cards' data paths")
    p.add_argument("--eval-blocks", type=int, default=64, help="held-out blocks for the before/after MLM loss")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    setup_logging(args.verbose)
    if args.max_steps <= 0 or args.max_length < 8 or not 0 < args.mlm_probability < 1:
        p.error("expected --max-steps > 0, --max-length >= 8 and 0 < --mlm-probability < 1")
    try:
        m = pretrain(args.encoder, args.text, args.out, max_steps=args.max_steps, max_length=args.max_length,
                     whole_word_masking=args.whole_word_masking, mlm_probability=args.mlm_probability,
                     batch_size=args.batch_size, learning_rate=args.learning_rate, seed=args.seed,
                     text_column=args.text_column, exclude_cards=args.exclude_card, data_dir=args.data_dir,
                     eval_blocks=args.eval_blocks, overwrite=args.overwrite)
    except ClinicalFTError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({k: v for k, v in m.items() if k not in ("mlm_head", "pooler")}, indent=2, default=float))
    print(f"encoder written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
