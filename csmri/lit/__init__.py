"""LightningModules, one per training stage."""

from csmri.lit.reconstruction import ReconstructionModule

__all__ = ["ReconstructionModule"]
