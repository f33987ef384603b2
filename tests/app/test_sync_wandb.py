"""`make sync-wandb` (csmri/app/sync_wandb.py): finds offline W&B runs and needs credentials to upload them."""

from __future__ import annotations


def test_sync_wandb_finds_offline_runs_and_needs_credentials(tmp_path, monkeypatch, capsys):
    from csmri.app import sync_wandb

    assert sync_wandb.main([str(tmp_path)]) == 0 and "nothing to upload" in capsys.readouterr().out
    (tmp_path / "stage1" / "run" / "wandb" / "offline-run-2024").mkdir(parents=True)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    assert sync_wandb.offline_runs([tmp_path]) == [tmp_path / "stage1" / "run" / "wandb" / "offline-run-2024"]
    assert sync_wandb.main([str(tmp_path)]) == 2 and "wandb login" in capsys.readouterr().err
