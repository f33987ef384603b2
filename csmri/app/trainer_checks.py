"""Checks of a training run's Trainer and LightningModule configs, and their failures as one-line errors: Trainer
arguments (nulls mean Lightning's defaults), an accelerator the machine lacks, an option a class refuses (with the
nearest key it accepts), a required option left unset."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from csmri.errors import ConfigError, did_you_mean

# Trainer arguments for which None is a setting of its own, not "Lightning's default"
NULL_MEANS_NONE = ("check_val_every_n_epoch",)  # None: validate by val_check_interval steps, across epochs


def trainer_arguments(trainer_cfg: DictConfig) -> dict[str, Any]:
    """``trainer_cfg`` resolved, without its null entries: ``trainer/default.yaml`` declares the everyday Trainer
    arguments as ``null`` = Lightning's own default (except :data:`NULL_MEANS_NONE`)."""
    arguments = OmegaConf.to_container(trainer_cfg, resolve=True)
    return {k: v for k, v in arguments.items() if v is not None or k in NULL_MEANS_NONE}


def check_trainer_values(trainer_cfg: DictConfig) -> None:
    """Values Lightning would only trip over later (``accumulate_grad_batches=0`` divides by zero mid-epoch)."""
    accumulate = trainer_cfg.get("accumulate_grad_batches")
    if accumulate is not None and (not isinstance(accumulate, int) or accumulate < 1):
        raise ConfigError(
            f"trainer.accumulate_grad_batches must be a whole number >= 1, not {accumulate!r}",
            "1 (null) steps the optimiser after every batch",
        )


def check_accelerator(accelerator: str) -> None:
    """``trainer.accelerator=gpu`` (or ``cuda``) on a machine without a CUDA GPU is a one-line error."""
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"no GPU on this machine: use trainer.accelerator=cpu (trainer.accelerator={accelerator} was asked for)",
            "trainer.accelerator=auto picks a GPU where there is one",
        )


def trainer_error(err: BaseException) -> BaseException:
    """A Trainer argument Lightning refuses (``MisconfigurationException``, a bad value's ``ValueError``/``TypeError``)
    as a one-line :class:`ConfigError`; other errors unchanged."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    if isinstance(err, MisconfigurationException | ValueError | TypeError):
        text = str(err).strip().splitlines()
        return ConfigError(
            f"invalid trainer settings: {text[0] if text else type(err).__name__}",
            "check the trainer.* values (csmri/conf/trainer/default.yaml; Lightning's Trainer documentation)",
        )
    return err


def check_trainer_keys(trainer_cfg: DictConfig) -> None:
    """Every ``trainer.<key>`` must be a ``lightning.Trainer`` argument (a typo is an error, not a TypeError)."""
    import inspect

    accepted = set(inspect.signature(L.Trainer.__init__).parameters) - {"self"}
    for key in trainer_cfg:
        if key != "_target_" and key not in accepted:
            raise ConfigError(
                f"unknown trainer option `trainer.{key}`{did_you_mean(str(key), accepted, prefix='trainer.')}",
                "trainer.* keys are the arguments of lightning.Trainer (csmri/conf/trainer/default.yaml); "
                "drop the `+` and fix the name",
            )


_UNEXPECTED = re.compile(r"(?:([\w.]+)\(\) )?got an unexpected keyword argument '(\w+)'")
_MISSING = re.compile(r"missing \d+ required (?:positional|keyword-only) arguments?: (.+)$")


def config_paths(cfg: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(dotted path, node)`` of every mapping entry in ``cfg`` (``hydra`` left out), without resolving values."""
    if isinstance(cfg, DictConfig):
        for key in cfg.keys():
            if not prefix and key == "hydra":
                continue
            path = f"{prefix}{key}"
            node = cfg._get_node(key)
            yield path, node
            if isinstance(node, DictConfig):
                yield from config_paths(node, f"{path}.")


def _accepted(node: DictConfig) -> list[str]:
    """The keys ``node`` has and the arguments its ``_target_`` takes (for "did you mean")."""
    import inspect

    from hydra.utils import get_object

    names = [str(k) for k in node.keys() if not str(k).startswith("_")]
    try:
        target = get_object(str(node._get_node("_target_")._value()))
        names += [n for n in inspect.signature(target).parameters if n not in ("self", "args", "kwargs")]
    except Exception:  # no target, or one that cannot be imported here: its keys are enough
        pass
    return names


def instantiation_error(err: BaseException, cfg: DictConfig) -> ConfigError | None:
    """A config entry that a class refuses (an unknown argument added with ``+``, a required one missing), found in
    ``err`` or the errors it wraps (Hydra's ``InstantiationException``, a module's ``could not build ...``), as a
    one-line :class:`ConfigError` naming the key; ``None`` for any other error."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    seen: BaseException | None = err
    for _ in range(10):
        if seen is None:
            return None
        text = str(seen)
        if isinstance(seen, MisconfigurationException):
            return trainer_error(seen)  # type: ignore[return-value]
        unknown = _UNEXPECTED.search(text) if isinstance(seen, TypeError | ValueError) else None
        if unknown:
            key, owner_class = unknown.group(2), (unknown.group(1) or "its class").removesuffix(".__init__")
            where = [(path, node) for path, node in config_paths(cfg) if path.rsplit(".", 1)[-1] == key]
            if where:
                path = where[0][0]
                parent = OmegaConf.select(cfg, path.rsplit(".", 1)[0]) if "." in path else cfg
                suggestion = did_you_mean(key, [c for c in _accepted(parent) if c != key])
                owner = path.rsplit(".", 1)[0] if "." in path else "the config"
                return ConfigError(
                    f"`{path}` is not an option of {owner} ({owner_class} takes no `{key}`)"
                    + suggestion.replace(" (did you mean `", f" (did you mean `{owner}."),
                    f"remove +{path}=..., or set one of the options {owner} has (csmri train --cfg job)",
                )
        missing = _MISSING.search(text.splitlines()[0] if text else "") if isinstance(seen, TypeError) else None
        if missing:
            return ConfigError(
                f"a required option is not set: {missing.group(1)} ({text.splitlines()[0]})",
                "set it on the command line (key=value), or pick a config that sets it",
            )
        seen = seen.__cause__ or seen.__context__
    return None
