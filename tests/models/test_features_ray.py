"""Training's content features on Ray (``COLDPROXY_FEATURE_ENGINE=ray``, issue 43): the encoders' pass spread over a
local Ray instance's actors gives the features the local pass gives, for the same items, real encoders and files."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from models.data import Dataset
from models.features import FIELDS, extract_features


@pytest.mark.slow
def test_the_ray_pass_gives_the_local_features(local_ray, tmp_path):
    from export.encoders import encoder_graphs

    (tmp_path / "img").mkdir()
    images = []
    for n in range(7):
        if n % 2:
            Image.new("RGB", (64, 48), (30 * n, 200 - 20 * n, 90)).save(tmp_path / "img" / f"{n}.jpg")
            images.append(tmp_path / "img" / f"{n}.jpg")
        else:
            images.append(None)
    texts = [f"Cotton shirt, size {n}" if n % 3 else "" for n in range(7)]
    ds = Dataset(
        name="ray-features",
        item_ids=[str(n) for n in range(7)],
        item_texts=texts,
        item_images=images,
        user_ids=["u"],
        users=np.zeros(1, np.int64),
        items=np.zeros(1, np.int64),
    )
    graphs = tmp_path / "graphs"

    def shared(_cache_dir):  # both passes run the same exported graphs
        return encoder_graphs(graphs)

    local = extract_features(ds, shared, tmp_path / "local", batch=2, progress=False)
    on_ray = extract_features(ds, shared, tmp_path / "ray", batch=2, progress=False, engine="ray")
    assert on_ray.has_text.sum() == 4 and on_ray.has_image.sum() == 3
    for field in FIELDS:
        np.testing.assert_allclose(getattr(on_ray, field), getattr(local, field), rtol=1e-5, atol=1e-5, err_msg=field)
    assert np.abs(on_ray.image_stages).sum() > 0 and np.abs(on_ray.text_layers).sum() > 0
