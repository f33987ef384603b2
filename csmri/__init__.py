"""csmri — compressed-sensing MRI reconstruction with adversarial and perceptual refinement.

Package map (each folder has one job):

- ``app``        entry points: the ``csmri`` dispatcher and one module per command (train, eval, reproduce, ...)
- ``conf``       Hydra configs (package data); ``config`` composes them and owns the resolvers
- ``physics``    FFT, complex helpers, masks and their sampler, undersampling, data consistency (pure torch)
- ``data``       the dataset contract (``layout``), datasets, the LightningDataModule, sources (phantom, folders)
- ``models``     RecNet, U-Nets, PatchGAN, VGG features, DAGAN generator, segmentation U-Net
- ``losses``     adversarial, perceptual, feature matching, penalty, normalisation, DAGAN's terms
- ``lit``        LightningModules on one base, optimisers, precision policy, checkpoints, callbacks
- ``metrics``    image metrics, Dice and SIS, statistics
- ``baselines``  DLMRI and other non-learned methods
- ``eval``       evaluation runner, methods, tables, figure, recons I/O, the reader-study kit
- ``pipeline``   declared pipelines (stages wired by references) and their runner: skip done, re-run stale
- ``reporting``  markdown tables and strict JSON shared by reports
- ``inference``  ``csmri.load(ckpt).reconstruct(kspace, mask)``: a trained model on user data
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    """Lazy attributes: ``csmri.load`` (:func:`csmri.inference.load`) imports torch only when used."""
    if name == "load":
        from csmri.inference import load

        return load
    raise AttributeError(f"module 'csmri' has no attribute {name!r}")
