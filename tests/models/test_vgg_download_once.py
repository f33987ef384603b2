"""The ImageNet VGG download is tried once per process; its stand-in is reported in one line, once."""

from __future__ import annotations

import logging
from urllib.error import URLError

from csmri.models.vgg import VGGFeatures


def test_a_failed_download_is_not_tried_again(tmp_path, monkeypatch, caplog):
    import torchvision.models._api as weights_api

    calls = []

    def failing(url, *args, **kwargs):
        calls.append(url)
        raise URLError("no network")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("CSMRI_OFFLINE", "0")
    monkeypatch.setattr(weights_api, "load_state_dict_from_url", failing)
    with caplog.at_level(logging.WARNING, logger="csmri.models.vgg"):
        for _ in range(3):  # e.g. three points of a sweep in one process
            assert VGGFeatures("imagenet", allow_random_fallback=True, layer="relu1_2").backbone == "vgg19-random"
    assert len(calls) == 1
    warnings = [r.getMessage() for r in caplog.records if "NO IMAGENET VGG19" in r.getMessage()]
    assert len(warnings) == 1 and "\n" not in warnings[0] and "no network" in warnings[0]
