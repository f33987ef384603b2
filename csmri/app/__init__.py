"""Entry points: the ``csmri`` dispatcher (:mod:`csmri.app.cli`) and one module per command.

``train`` and ``evaluate`` are Hydra apps (configs in ``csmri/conf``); ``reproduce``, ``data``, ``compare``,
``readers``, ``reconstruct``, ``export`` are argparse-style tools. This is the command-line layer: the only one that
parses arguments, composes configs from command lines or exits; the library below takes plain values. Nothing else in
the package imports from here.
"""
