"""Evaluation: the ``csmri eval`` runner, Table 1 (:mod:`.tables`), Figure 2 (:mod:`.figure`), the
reconstructions file ``recons.npz`` (:mod:`.recons`) and the blinded reader-study kit
(:mod:`.reader_study`, the ``csmri readers`` command).

Submodules are imported on demand (matplotlib, PIL and rich load only when a figure, the reader study
or a console summary is made).
"""
