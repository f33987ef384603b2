"""Evaluation: the ``csmri eval`` runner, Table 1 (:mod:`.tables`), Figure 2 (:mod:`.figure`) and the
blinded reader-study kit (:mod:`.readers`).

Submodules are imported on demand (matplotlib, PIL and rich load only when a figure, the reader study
or a console summary is made).
"""
