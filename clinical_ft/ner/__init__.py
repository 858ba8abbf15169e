"""Named-entity recognition: BIO tagging with first-subword labels, windowed long sentences,
entity-level seqeval P/R/F1.

- task.py: the Task (registry.py serves it for ``kind: ner``, ``format: conll`` cards)
- conll.py: the CoNLL/IOB reader and writer
- explain.py: "why this entity" reports (built on clinical_ft.interpret)
- cli.py: ``python -m clinical_ft.ner train|evaluate|predict|explain``
"""

from .task import TASK, NerTask

__all__ = ["TASK", "NerTask"]
