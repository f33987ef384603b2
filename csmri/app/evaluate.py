"""`csmri eval` / `python -m csmri eval`: evaluate methods on the test split (csmri/conf/eval.yaml)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from csmri.app.guard import guarded
from csmri.config import CONFIG_SEARCH_PATH


@hydra.main(config_path=CONFIG_SEARCH_PATH, config_name="eval", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from csmri.app.quiet import quiet_third_party
    from csmri.eval.runner import evaluate

    quiet_third_party()
    guarded(evaluate, cfg)


if __name__ == "__main__":
    main()
