"""30-day readmission from clinical notes: chunked long-note training, aggregated admission risks.

- task.py: the Task (registry.py serves it for ``kind: readmission``, ``format: notes_csv``)
- notes.py: the notes CSV reader (streamed blocks, every bad row reported); metrics.py: AUROC, AUPRC, RP80
- mimic.py, mimic_io.py, prepare.py: ClinicalBERT's protocol on MIMIC-III tables or a notes CSV
- infer.py: streamed risk.csv scoring; synthetic.py, demo.py: the no-data demo
- cli.py: ``python -m clinical_ft.readmission prepare|train|evaluate|predict|explain|demo``
"""

from .task import TASK, ReadmissionTask

__all__ = ["TASK", "ReadmissionTask"]
