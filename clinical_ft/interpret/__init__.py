"""Interpretability: attention heatmaps, attention rollout and integrated-gradient attributions,
written as self-contained offline HTML reports (plus PNG heatmaps beside them).

- :func:`explain_notes`: sequence classifiers on long notes (readmission), chunk by chunk.
- :func:`explain_relation`: relation classifiers on marked pairs ([CLS] or entity-start pooling).
- :func:`explain_ner`: token classifiers, "why this entity".
- :func:`explain_qa`: extractive QA, "why this span", and yes/no QA (PubMedQA), "why this label".
- :mod:`.attribution`: the generic core (a forward function + a target selector), with selectors for
  sequence classification, token classification and extractive QA (start/end logits); extra model
  inputs (e.g. ``entity_positions``) pass through to the model.
"""

from __future__ import annotations

from .attention import eager_attention, rollout
from .attribution import Attribution, integrated_gradients
from .ner_explain import explain_ner
from .notes import explain_notes
from .qa_explain import explain_qa
from .relation_explain import explain_relation

__all__ = ["Attribution", "eager_attention", "explain_ner", "explain_notes", "explain_qa", "explain_relation",
           "integrated_gradients", "rollout"]
