"""The explanation engine: attention heatmaps, attention rollout and captum integrated-gradient
attributions mapped back to the original text, written as self-contained offline HTML reports
(plus PNG heatmaps beside them). It imports no task: each task package builds its own report
sections from these pieces (``clinical_ft/<task>/explain.py``) and hands them over through the
Task protocol's ``explain_section`` hook.

- :mod:`.attribution`: integrated gradients (a forward function + a target selector), with
  selectors for sequence classification, token classification and extractive QA (start/end logits).
- :mod:`.attention`: eager attention only while attentions are needed; rollout; pooled maps.
- :mod:`.core`, :mod:`.html`, :mod:`.textmap`, :mod:`.heatmap`: report pieces, text mapping, PNGs.
- :mod:`.faithfulness`: AOPC comprehensiveness / sufficiency of any token ranking (task-agnostic).
- :mod:`.trust`: per explained window, IG convergence and the faithfulness of IG, attention,
  rollout and random; :mod:`.window_view`: the window ranking strip of long notes.
- :func:`explain_notes`: any sequence classifier on long notes (readmission), windows ranked by
  their share of the aggregated score (clinical_ft.aggregation), then words in the top windows.
"""

from __future__ import annotations

from .attention import eager_attention, rollout
from .attribution import Attribution, integrated_gradients
from .notes import explain_notes

__all__ = ["Attribution", "eager_attention", "explain_notes", "integrated_gradients", "rollout"]
