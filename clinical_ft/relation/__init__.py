"""Relation extraction: one candidate pair per example, arguments marked (entity markers, typed
markers or BioBERT masks), [CLS] or entity-start pooling, micro-P/R/F1 over the positive classes.

- task.py: the Task (registry.py serves it for ``kind: relation``, formats ``tsv`` and ``ddi_xml``)
- pairs.py: relation examples, the BioBERT/BLUE tsv reader and argument marking
- ddi_xml.py: the DDI-2013 XML reader (zip, folder or file) and its bad-input policies
- model.py: the entity-start pooling head
- explain.py: "why this relation" reports (built on clinical_ft.interpret)
- cli.py: ``python -m clinical_ft.relation train|evaluate|predict|explain``
"""

from .task import TASK, RelationTask

__all__ = ["TASK", "RelationTask"]
