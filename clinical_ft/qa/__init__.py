"""Question answering: extractive spans (SQuAD v1 JSON; BioASQ factoid) and yes/no/maybe
classification (PubMedQA); the card's ``data.format`` picks the head (registry.py).

- extractive.py: the extractive Task (formats ``squad``, ``bioasq``) and its options
- yesno.py: the yes/no/maybe Task (format ``pubmedqa``)
- readers.py: SQuAD, BioASQ golden and PubMedQA readers; splits.py: the cards' split protocols
- post.py: n-best span post-processing and the SQuAD/BioASQ metrics
- explain.py, yesno_explain.py, pair_view.py: "why this answer" reports (built on clinical_ft.interpret)
- cli.py: ``python -m clinical_ft.qa train|evaluate|predict|explain``
"""

from .extractive import TASK as EXTRACTIVE
from .extractive import ExtractiveQATask
from .yesno import TASK as YESNO
from .yesno import YesNoTask

__all__ = ["EXTRACTIVE", "YESNO", "ExtractiveQATask", "YesNoTask"]
