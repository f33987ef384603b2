"""Constants and helpers shared by the tests: tiny data and network settings, fast training configs composed outside
a Hydra app, and the ``csmri`` command as a subprocess. (Fixtures are in ``tests/conftest.py``.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from omegaconf import DictConfig

from csmri.config import compose, config_dir

# the phantom dataset of the `phantom_root` fixture: 4 patients (2/1/1 split), 6 slices, 64x64
TINY = {"n_patients": 4, "size": 64, "n_slices": 6, "seed": 0}
# tiny networks and no VGG download for every stage-2 run in the tests
TINY_STAGE2 = [
    "model.net.refine.net.features=[8,16,32]",
    "model.net.discriminator.net.features=[8,16,16,32,32,32]",
    "model.net.perceptual.weights=random",
    "model.net.perceptual.layer=relu2_2",
    "model.log_images_every_n_steps=2",
]
# tiny DAGAN / joint baselines (64x64 phantom)
ADVERSARIAL = {
    "dagan": [
        "model.net.generator.features=[8,16,16,16,16,16]",
        "model.net.discriminator.net.max_features=32",
        "model.net.perceptual.weights=random",
        "model.net.perceptual.layer=relu1_2",
    ],
    "joint": [
        "model.net.generator.nf=8",
        "model.net.discriminator.net.features=[8,16,16,32,32,32]",
        "model.net.perceptual.weights=random",
        "model.net.perceptual.layer=relu1_2",
    ],
}


def tiny_dagan_overrides(phantom_root: Path, *extra: str) -> list[str]:
    """A tiny DAGAN on the test phantom (4x, batch 2, 64x64 VGG input, CSV logs), then ``extra``."""
    return [
        "experiment=dagan",
        f"data.root={phantom_root}",
        *ADVERSARIAL["dagan"],
        "model.net.perceptual.size=64",
        "logger=csv",
        "data.acceleration=4",
        "data.batch_size=2",
        *extra,
    ]


# fast test defaults of every training run composed in-process: one epoch, CSV logs (no W&B)
FAST_TRAIN = ["trainer.max_epochs=1", "logger=csv"]
# the small RecNet and batch of the `cfg_train_global` fixture (stage 1 on the tiny phantom)
STAGE1_SMALL = ["model.net.nf=8", "data.batch_size=4"]


def compose_config(name: str, overrides: list[str], output_dir: Path | None = None) -> DictConfig:
    """Compose ``conf/<name>.yaml`` with ``overrides``; ``paths.output_dir`` set to ``output_dir``."""
    extra = [f"paths.output_dir={output_dir}"] if output_dir is not None else []
    return compose(name, [*overrides, *extra])


def train_config(overrides: list[str], output_dir: Path | None = None) -> DictConfig:
    """``conf/train.yaml`` with :data:`FAST_TRAIN` and then ``overrides`` (which win, e.g. ``trainer.max_epochs=2``)."""
    return compose_config("train", [*FAST_TRAIN, *overrides], output_dir)


def experiments() -> list[str]:
    return sorted(p.stem for p in (config_dir() / "experiment").glob("*.yaml"))


# the csmri command line as a subprocess (a fresh interpreter, like a user's shell), quiet and offline
CSMRI = [sys.executable, "-m", "csmri"]
SUBPROCESS_ENV = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", "CSMRI_OFFLINE": "1"}  # no downloads


def run_csmri(*args: str, timeout: int = 600, **env: str) -> subprocess.CompletedProcess:
    """Run ``csmri <args>`` in a subprocess; ``env`` entries override :data:`SUBPROCESS_ENV`."""
    return subprocess.run(
        [*CSMRI, *args], capture_output=True, text=True, timeout=timeout, env={**SUBPROCESS_ENV, **env}
    )


def train_best_checkpoint(output_dir: Path, overrides: list[str]) -> Path:
    """Run ``csmri train`` in-process with :data:`FAST_TRAIN` and ``overrides`` into ``output_dir``; its
    ``checkpoints/best.ckpt``."""
    from csmri.app.train import train

    train(train_config(overrides, output_dir))
    return output_dir / "checkpoints" / "best.ckpt"


def simulated_batch(phantom_root: Path, n: int = 3) -> dict:
    """The first training batch of ``n`` slices of ``phantom_root`` at 4x, simulated outside a Trainer (so with the
    evaluation masks): what a LightningModule's step sees."""
    from csmri.data import MRIDataModule

    dm = MRIDataModule(str(phantom_root), acceleration=4, batch_size=n)
    dm.setup("fit")
    return dm.on_after_batch_transfer(next(iter(dm.train_dataloader())), 0)


def capture_modules(monkeypatch, prepare=None) -> list:
    """The modules ``csmri.app.train`` builds from now on (appended as they are built); ``prepare(module)``, if given,
    runs on each as it is built (e.g. to wrap its methods with a spy)."""
    import csmri.app.train as app

    built, original = [], app.build_module

    def build(cfg, datamodule=None):
        built.append(original(cfg, datamodule))
        if prepare is not None:
            prepare(built[-1])
        return built[-1]

    monkeypatch.setattr(app, "build_module", build)
    return built
