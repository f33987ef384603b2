"""Known third-party console noise, silenced by message where it is emitted, so that what a run prints is csmri's.

Each entry names a message that says nothing a csmri user can act on:

- Lightning's ``💡 Tip: ... litlogger`` advertisement (an INFO record of ``lightning.pytorch.utilities.rank_zero``);
- torch's ``isinstance(treespec, LeafSpec)`` deprecation, raised inside Lightning's own ``_pytree`` helpers;
- Lightning's ``Found N module(s) in eval mode at the start of training``: the frozen stage-1 network, VGG and the
  segmentation net are in eval mode by design;
- ``weights_only`` notices of ``torch.load`` from Lightning's checkpoint loading (csmri's checkpoints hold plain data);
- ``You requested to overfit but enabled train dataloader shuffling`` (``debug=overfit`` asks for exactly that).

W&B's ``anonymous`` deprecation is avoided at its source instead (:func:`csmri.app.loggers.build_loggers`). Other
warnings are left alone.
"""

from __future__ import annotations

import logging
import warnings

WARNINGS = (
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    r"Found \d+ module\(s\) in eval mode at the start of training",
    r".*`weights_only=False`",
    r"You are using `torch.load` with `weights_only=False`",
    r"You requested to overfit but enabled train dataloader shuffling",
)
LOG_RECORDS = {"lightning.pytorch.utilities.rank_zero": ("litlogger",)}


class _DropMessages(logging.Filter):
    def __init__(self, fragments: tuple[str, ...]) -> None:
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(fragment in message for fragment in self.fragments)


def quiet_third_party() -> None:
    """Install the filters (idempotent; process-wide, as Python's warning filters are)."""
    for message in WARNINGS:
        warnings.filterwarnings("ignore", message=message)
    for name, fragments in LOG_RECORDS.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropMessages) for f in logger.filters):
            logger.addFilter(_DropMessages(fragments))
