"""The text encoder's fine-tuned last layer (issue 16): training computes the features the exported
text encoder graph computes, so what the generators learnt on is what the service feeds them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from coldproxy.config import TrainSettings
from coldproxy.ort import make_session
from models.encoders import TextEncoder, tokenizer
from models.items.text_finetune import LastLayer, padded, penultimate_states


def test_the_last_layer_on_the_frozen_states_reproduces_the_published_encoder(movielens_dir):
    texts = [
        "Toy Story (1995). Genres: Adventure, Animation.",
        "Heat (1995). Genres: Action, Crime, Thriller.",
        "A much longer description of a film, with tags: slow, moody, great soundtrack, rain.",
    ]
    enc = TextEncoder()
    feeds = tokenizer(128)(texts)
    with torch.no_grad():
        _, layers = enc(*(torch.from_numpy(v) for v in feeds.values()))
        model = LastLayer(enc.bert.encoder.layer[-1], 8)
        pooled = model.pooled(*padded(penultimate_states(enc, texts, 128, progress=False), np.arange(len(texts))))
    np.testing.assert_allclose(pooled.numpy(), layers[:, -1].numpy(), atol=1e-4)


@pytest.mark.slow
def test_a_fine_tuned_layer_is_served_by_the_package_text_encoder(tmp_path, movielens_dir):
    from export.encoders import encoder_graphs
    from export.package import build_package
    from models.items.checkpoint import save_checkpoint
    from models.items.train import train

    s = TrainSettings(
        data_dir=movielens_dir,
        max_items=200,
        seed=0,
        id_epochs=5,
        proxy_epochs=2,
        eval_every=5,
        diffusion=False,
        select_modalities=False,
        text_finetune=True,
        text_finetune_epochs=2,
        text_finetune_lr=1e-3,
        cache_dir=tmp_path / "cache",
        work_dir=tmp_path / "train",
        package_dir=tmp_path / "package",
    )
    r = train(s, encoder_graphs, progress=False)
    assert r.metrics["text_finetune"]["best_epoch"] >= 1 and r.text_layer is not None
    save_checkpoint(r, s.work_dir)
    package = build_package(s)
    idx = np.flatnonzero(r.features.has_text)[:12]
    graph = make_session(package / "text_encoder.onnx")
    served, layers = graph.run(None, tokenizer(128)([r.dataset.item_texts[i] for i in idx]))
    np.testing.assert_allclose(served, r.features.text[idx], atol=1e-4)  # training's features = the service's
    np.testing.assert_allclose(layers, r.features.text_layers[idx], atol=1e-4)
    published = make_session(encoder_graphs(s.cache_dir)[0]).run(
        None, tokenizer(128)([r.dataset.item_texts[i] for i in idx])
    )[0]
    assert np.abs(published - served).max() > 1e-3  # the layer did move
    manifest = (package / "manifest.json").read_text()
    assert "last layer fine-tuned" in manifest
