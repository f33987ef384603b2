"""Entry points: the ``csmri`` dispatcher (:mod:`csmri.app.cli`) and one module per command.

``train`` and ``evaluate`` are Hydra apps (configs in ``csmri/conf``); ``reproduce``, ``data``, ``compare`` are
argparse-style tools. Nothing else in the package imports from here.
"""
