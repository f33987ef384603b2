"""`make mutation-hand`: hand-made mutants of the adversarial training step, each run against the tests that pin it.

    python -m experiments.hand_mutants [ID ...] [--list]

mutmut (``make mutation``) cannot reach the GAN base's training step in useful time: every test of ``csmri/lit``
calls it, so each of its ~300 mutants runs minutes of training tests. This tool keeps a curated list of single-line
bugs in what the paper's method depends on — D's loss and its inputs, replay, feature matching, the normaliser, the
optimisers, DAGAN's terms, stage 1's loss, stage 2's networks as built — and runs each against the focused tests in
:data:`TESTS` (stopping at the first failure), in a scratch copy of the tracked tree (``.mutation/hand/``), never in
the working tree. A mutant is
*killed* when a test fails. Each line prints the mutant, killed or SURVIVED, and the first failing test; the exit code
is the number of survivors. ``tests/test_mutation_tool.py`` checks that every mutant still applies to the code.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import NamedTuple

from experiments.mutation import MODULES, ROOT, SCRATCH, sync_copy

TESTS = MODULES["gan"]  # the focused tests of the training steps (mutmut's "gan" target runs the same)


class Mutant(NamedTuple):
    id: str
    file: str
    old: str
    new: str


GAN, REPLAY, ADV, REC = (
    "csmri/lit/gan.py",
    "csmri/lit/replay.py",
    "csmri/lit/adversarial.py",
    "csmri/lit/reconstruction.py",
)
MUTANTS = [
    Mutant("no-replay", GAN, "fake_for_d = self.replay.query(self._discriminator_input(output))",
           "fake_for_d = self._discriminator_input(output)"),
    Mutant("d-loss-swapped", GAN, "loss_d = self.d_loss(real_logits, fake_logits_d)",
           "loss_d = self.d_loss(fake_logits_d, real_logits)"),
    Mutant("d-real-is-output", GAN, "real_logits, _ = self.discriminate(self._discriminator_input(target))",
           "real_logits, _ = self.discriminate(self._discriminator_input(output.detach()))"),
    Mutant("feat-swapped", GAN, 'terms["feat"] = self.feat_loss(real_features, fake_features)',
           'terms["feat"] = self.feat_loss(fake_features, real_features)'),
    Mutant("feat-real-from-output", GAN, "_, real_features = self.discriminate(self._discriminator_input(target))",
           "_, real_features = self.discriminate(self._discriminator_input(output))"),
    Mutant("feat-no-gradient", GAN, 'terms["feat"] = self.feat_loss(real_features, fake_features)',
           'terms["feat"] = self.feat_loss(real_features, [f.detach() for f in fake_features])'),
    Mutant("vgg-swapped", GAN, 'self.perceptual(magnitude(output), magnitude(target), keys=batch.get("key"))',
           'self.perceptual(magnitude(target), magnitude(output), keys=batch.get("key"))'),
    Mutant("adv-no-gradient", GAN, 'terms = {"adv": self.adv_loss(fake_logits)}',
           'terms = {"adv": self.adv_loss(fake_logits.detach())}'),
    Mutant("normaliser-every-step", GAN,
           "                if not bool(self.normalizer.initialised):\n"
           "                    self.normalizer.initialise(terms, reduce=self._reduce_mean)\n"
           "                self._normaliser_ready = True",
           "                self.normalizer.initialise(terms, reduce=self._reduce_mean)"),
    Mutant("no-zero-grad", GAN, "optimizer.zero_grad(set_to_none=True)", "pass"),
    Mutant("d-optimiser-on-g", GAN, "opt_d = build_optimizer(hp.optimizer, self.discriminator.parameters())",
           "opt_d = build_optimizer(hp.optimizer, self.generator_parameters())"),
    Mutant("d-input-flipped", GAN,
           'return magnitude(channels).unsqueeze(1) if self.d_input == "magnitude" else channels',
           'return magnitude(channels).unsqueeze(1) if self.d_input != "magnitude" else channels'),
    Mutant("no-label-smoothing", GAN, 'self.d_loss = DiscriminatorLoss(loss["label_smoothing"])',
           "self.d_loss = DiscriminatorLoss(0.0)"),
    Mutant("replay-settings-ignored", GAN, 'self.replay = ReplayBuffer(**discriminator.get("replay", {}))',
           "self.replay = ReplayBuffer()"),
    Mutant("grad-clip-ignored", GAN, "        if self.hparams.grad_clip:\n", "        if False:\n"),
    Mutant("d-fake-logged-from-d-step", GAN, '"train/d_fake": torch.sigmoid(fake_logits).mean(),',
           '"train/d_fake": torch.sigmoid(fake_logits_d).mean(),'),
    Mutant("g-step-toggles-d", GAN, "with self.toggled_optimizer(opt_g):", "with self.toggled_optimizer(opt_d):"),
    Mutant("gan-schedule-never-steps", GAN, "            scheduler.step()\n", "            pass\n"),
    Mutant("replay-p-inverted", REPLAY, "elif torch.rand((), generator=generator, device=device) < self.p:",
           "elif torch.rand((), generator=generator, device=device) >= self.p:"),
    Mutant("replay-keeps-old-on-swap", REPLAY, "                self.images[j] = image\n", "                pass\n"),
    Mutant("replay-one-short", REPLAY, "            if n < self.capacity:", "            if n < self.capacity - 1:"),
    Mutant("replay-count-frozen", REPLAY, "                self.count += 1\n", "                pass\n"),
    Mutant("dagan-nmse-to-itself", ADV, '        terms["nmse"] = dagan_nmse(output, target)',
           '        terms["nmse"] = dagan_nmse(output, output.detach())'),
    Mutant("dagan-freq-to-itself", ADV, '        terms["freq"] = dagan_freq(output, target)',
           '        terms["freq"] = dagan_freq(output, output.detach())'),
    Mutant("dagan-selects-on-zero-filled", ADV, 'self.log("val/nmse", dagan_nmse_01(output, batch["target"])',
           'self.log("val/nmse", dagan_nmse_01(complex_to_channels(batch["zero_filled"]), batch["target"])'),
    Mutant("dagan-sees-the-target", ADV,
           'return self.generator(complex_to_channels(batch["zero_filled"]), batch["kspace"], batch["mask"]), {}',
           'return self.generator(complex_to_channels(batch["target"]), batch["kspace"], batch["mask"]), {}'),
    Mutant("stage1-fits-zero-filled", REC,
           'loss = self.loss_fn(output, complex_to_channels(batch["target"]))\n        n = output.shape[0]',
           'loss = self.loss_fn(output, complex_to_channels(batch["zero_filled"]))\n        n = output.shape[0]'),
    Mutant("stage1-val-loss-on-zero-filled", REC,
           '        loss = self.loss_fn(output, complex_to_channels(batch["target"]))\n        self.val_psnr_zf',
           '        loss = self.loss_fn(output, complex_to_channels(batch["zero_filled"]))\n        self.val_psnr_zf'),
    Mutant("stage1-schedule-per-step", REC,
           'return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}',
           'return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}'),
    Mutant("stage1-zero-filled-psnr-of-output", REC, 'self.val_psnr_zf(magnitude(batch["zero_filled"]), target)',
           "self.val_psnr_zf(magnitude(output), target)"),
    # stage 2's networks as the paper builds them: V's orthogonal initialisation, D's N(0, 0.02), the gate's scale
    Mutant("v-init-kaiming", "csmri/conf/model/refine.yaml", "init: orthogonal", "init: kaiming"),
    Mutant("v-init-gain", "csmri/models/unet.py", "nn.init.orthogonal_(module.weight)",
           "nn.init.orthogonal_(module.weight, gain=1.4)"),
    Mutant("d-init-std", "csmri/models/discriminator.py", "nn.init.normal_(module.weight, 0.0, 0.02)",
           "nn.init.normal_(module.weight, 0.0, 0.03)"),
    Mutant("gate-unscaled", "csmri/models/refinement.py", "return base + scale * self.gate * x_v, x_v",
           "return base + self.gate * x_v, x_v"),
    Mutant("vgg-layer", "csmri/conf/model/perceptual/vgg19.yaml", "layer: relu5_4", "layer: relu4_4"),
    # the acquisition and stage 1 as shipped: 8x Gaussian masks, RecNet trained with MSE
    Mutant("acquisition-4x", "csmri/conf/data/phantom.yaml", "acceleration: 8 ", "acceleration: 4 "),
    Mutant("mask-family-random", "csmri/conf/data/phantom.yaml", "_target_: csmri.physics.mask.GaussianLineMask",
           "_target_: csmri.physics.mask.RandomLineMask"),
    Mutant("stage1-l1", "csmri/conf/experiment/stage1.yaml", "override /loss: mse", "override /loss: l1"),
]  # fmt: skip


def apply(mutant: Mutant, root=ROOT) -> str:
    """The text of ``mutant.file`` under ``root`` with the mutation applied; ``ValueError`` unless it applies once."""
    text = (root / mutant.file).read_text()
    if text.count(mutant.old) != 1:
        raise ValueError(f"{mutant.id}: its text occurs {text.count(mutant.old)} times in {mutant.file}")
    return text.replace(mutant.old, mutant.new)


def run(mutant: Mutant, work) -> dict:
    """Apply ``mutant`` in ``work``, run :data:`TESTS` (stop at the first failure), restore the file."""
    path = work / mutant.file
    original = path.read_text()
    path.write_text(apply(mutant, work))
    start = time.time()
    env = {**os.environ, "PYTHONPATH": str(work), "WANDB_MODE": "disabled"}
    try:
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *TESTS],
            cwd=work, env=env, capture_output=True, text=True,
        )  # fmt: skip
    finally:
        path.write_text(original)
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAILED")]
    status = "killed" if result.returncode else "SURVIVED"
    return {
        "id": mutant.id,
        "status": status,
        "by": failed[0][7:].split(" - ")[0] if failed else "",
        "s": round(time.time() - start),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ids", nargs="*", help="mutants to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTANTS if not args.ids or m.id in args.ids]
    unknown = set(args.ids) - {m.id for m in MUTANTS}
    if unknown:
        parser.error(f"unknown mutant(s): {', '.join(sorted(unknown))}")
    if args.list:
        for m in chosen:
            print(f"{m.id:36s} {m.file}")
        return 0
    work = SCRATCH / "hand"
    work.mkdir(parents=True, exist_ok=True)
    sync_copy(work)
    survivors = 0
    for mutant in chosen:
        result = run(mutant, work)
        survivors += result["status"] == "SURVIVED"
        print(json.dumps(result), flush=True)
    print(f"{len(chosen) - survivors} of {len(chosen)} hand-made mutants killed")
    return survivors


if __name__ == "__main__":
    raise SystemExit(main())
