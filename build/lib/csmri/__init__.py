"""csmri — compressed-sensing MRI reconstruction with adversarial and perceptual refinement.

Package map (each folder has one job):

- ``physics``  FFT, masks, undersampling, data consistency (pure torch)
- ``data``     phantom generator, datasets, the LightningDataModule
- ``models``   RecNet and other networks
- ``lit``      LightningModules (one per training stage)
- ``metrics``  image-quality metrics
"""

__version__ = "0.1.0"
