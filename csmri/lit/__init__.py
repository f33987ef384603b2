"""LightningModules, one per training stage."""

from csmri.lit.reconstruction import ReconstructionModule
from csmri.lit.refinement import RefinementModule

__all__ = ["ReconstructionModule", "RefinementModule"]
