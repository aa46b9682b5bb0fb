"""Bundled study specs (``bitnas search quickstart``) and reproduced paper experiments."""
