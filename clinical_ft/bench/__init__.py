"""`clinical-ft benchmark`: the resumable card x encoder x seed grid (runner.py) and its results
tables with bootstrap intervals and published references (table.py)."""
