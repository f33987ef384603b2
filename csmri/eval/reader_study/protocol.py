"""What the reader study asks and how its files are told apart: criteria, rating scale, key format.

Shared by the export (rating page, ``key.json``) and the scoring (``ratings.csv`` columns
``reader,image,<criteria>``; empty = not rated).
"""

from __future__ import annotations

__all__ = ["CRITERIA", "CRITERIA_TITLES", "RATING_SCALE", "KEY_FORMAT"]

CRITERIA = ("overall", "scar", "artefacts")
"""Rated criteria, in the order of the page and the CSV columns (artefacts: 4 = no artefacts)."""
CRITERIA_TITLES = {"overall": "Overall quality", "scar": "Scar visibility", "artefacts": "Artefacts"}
RATING_SCALE = {1: "1 poor", 2: "2 fair", 3: "3 good", 4: "4 very good"}
"""The 1-4 ratings and their labels on the page."""
KEY_FORMAT = "csmri-reader-study-v1"
"""The ``format`` field of ``key.json``."""
