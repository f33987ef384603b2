"""Seitzer et al. (MICCAI 2018) reproduced with csmri: the pipeline files (``pipelines/``), their hooks
(:mod:`.project`), the results README (:mod:`.results`), the paper's targets (:mod:`.targets`) and the α /
loss-weight study (:mod:`.study`, :mod:`.study_report`)."""

from pathlib import Path

PIPELINES = Path(__file__).resolve().parent / "pipelines"
STUDY_CONFIG = Path(__file__).resolve().parent / "study.yaml"
