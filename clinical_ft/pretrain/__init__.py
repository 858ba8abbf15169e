"""Domain-adaptive pre-training (``python -m clinical_ft.pretrain``): mlm.py trains, text.py reads the
corpus, cli.py is the command line."""
