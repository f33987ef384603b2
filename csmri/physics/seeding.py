"""Stable seed derivation: the same parts give the same 63-bit seed on every machine and process.

Python's ``hash`` is salted per process, so seeds are derived with BLAKE2b over the parts' ``repr``.
"""

from __future__ import annotations

import hashlib

import torch


def derive_seed(*parts: object) -> int:
    """A non-negative 63-bit integer determined only by ``parts`` (ints, strings, ...)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def seeded_generator(*parts: object, device: torch.device | str = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with :func:`derive_seed` of ``parts``."""
    return torch.Generator(device=device).manual_seed(derive_seed(*parts))
