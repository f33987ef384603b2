"""Training losses: segmentation (cross-entropy + Dice) and, for stage 2, the visual losses."""
