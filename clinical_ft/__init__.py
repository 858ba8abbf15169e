"""clinical_ft: fine-tune BERT-family encoders on clinical and biomedical text."""

__version__ = "0.1.0"
