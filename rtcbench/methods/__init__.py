"""Chunking methods. Configs live in `config.py` (a tagged union); one small module per method implements it."""
