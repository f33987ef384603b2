"""LightningModules, one per training stage."""

from csmri.lit.adversarial import AdversarialReconstructionModule
from csmri.lit.reconstruction import ReconstructionModule
from csmri.lit.refinement import RefinementModule

__all__ = ["AdversarialReconstructionModule", "ReconstructionModule", "RefinementModule"]
