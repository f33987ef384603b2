"""Non-learned reconstruction baselines (DLMRI) and their sparse-coding building blocks."""

from csmri.baselines.dlmri import DEFAULT_ERROR_THRESHOLDS, DLMRI, FAST_SETTINGS, default_workers, nu_from_noise
from csmri.baselines.patches import assemble_patches, extract_patches, patch_coverage, patch_starts
from csmri.baselines.sparse import initial_dictionary, ksvd, normalise_atoms, omp

__all__ = [
    "DEFAULT_ERROR_THRESHOLDS",
    "DLMRI",
    "FAST_SETTINGS",
    "assemble_patches",
    "default_workers",
    "extract_patches",
    "initial_dictionary",
    "ksvd",
    "normalise_atoms",
    "nu_from_noise",
    "omp",
    "patch_coverage",
    "patch_starts",
]
