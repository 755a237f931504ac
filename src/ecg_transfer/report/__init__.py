"""Report figures and tables made from saved runs (plots.py: reliability diagrams)."""
