"""30-day readmission from clinical notes: chunked long-note training, aggregated admission risks.

Run as ``python -m clinical_ft.readmission prepare|train|evaluate|predict|explain|demo``.
"""

from .cli import main
from .task import TASK, ReadmissionTask

__all__ = ["TASK", "ReadmissionTask", "main"]
