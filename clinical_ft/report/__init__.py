"""`clinical-ft report`: one self-contained HTML page about a run (metrics, curves, model card, and
example explanations through the task's hooks). page.py builds the page, examples.py the examples."""

from .page import build_report

__all__ = ["build_report"]
