"""Training's content features on a Ray cluster (``coldproxy train --engine ray``): the catalogue's texts and
pictures split into blocks of a batch, each encoded by an actor that opened the encoder graphs once
(``models.encoder_sessions.Encoders``, the code the local pass runs), reassembled in item order for the feature
cache. The graphs and the pictures must be readable at the same paths on every node. Needs
``pip install 'coldproxy[ray]'``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from models.encoder_sessions import Encoders


class _EncodeActor:
    def __init__(self, text_graph: str, image_graph: str, max_len: int, kind: str):
        self.encoders, self.kind = Encoders(Path(text_graph), Path(image_graph), max_len), kind

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        refs = [str(r) for r in batch["ref"]]
        pooled, extra = (
            self.encoders.texts(refs) if self.kind == "text" else self.encoders.images([Path(p) for p in refs])
        )
        return {"row": batch["row"], "pooled": pooled, "extra": extra.reshape(len(refs), -1)}


def encode_on_ray(
    text_graph: Path,
    image_graph: Path,
    max_len: int,
    texts: list[str],
    images: list[Path],
    batch: int,
    address: str | None = None,
    progress: bool = True,
) -> tuple[np.ndarray, ...]:
    """(text, text_layers, image, image_stages), as ``models.features.encode_local`` returns them."""
    import pyarrow as pa
    import ray
    from tqdm.auto import tqdm

    from models.encoders import IMAGE_DIM, IMAGE_STAGE_DIM, TEXT_DIM, TEXT_LAYERS

    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    pool = max(1, int(ray.cluster_resources().get("CPU", 1)))
    out = {
        "text": (
            np.zeros((len(texts), TEXT_DIM), np.float32),
            np.zeros((len(texts), TEXT_LAYERS, TEXT_DIM), np.float32),
        ),
        "image": (np.zeros((len(images), IMAGE_DIM), np.float32), np.zeros((len(images), IMAGE_STAGE_DIM), np.float32)),
    }
    with tqdm(total=len(texts) + len(images), desc="content features (Ray)", disable=not progress) as bar:
        for kind, refs in (("text", texts), ("image", [str(p) for p in images])):
            blocks = [
                pa.table({"row": np.arange(s, min(s + batch, len(refs))), "ref": refs[s : s + batch]})
                for s in range(0, len(refs), batch)
            ]  # one block a batch: spread over the actors
            if not blocks:
                continue
            ds = ray.data.from_arrow(blocks).map_batches(
                _EncodeActor,
                fn_constructor_kwargs={
                    "text_graph": str(text_graph),
                    "image_graph": str(image_graph),
                    "max_len": max_len,
                    "kind": kind,
                },
                batch_size=batch,
                batch_format="numpy",
                concurrency=min(pool, len(blocks)),
                num_cpus=1,
            )
            pooled, extra = out[kind]
            for got in ds.iter_batches(batch_size=None, batch_format="numpy"):
                rows = np.asarray(got["row"], np.int64)
                pooled[rows], extra[rows] = got["pooled"], got["extra"].reshape(len(rows), *extra.shape[1:])
                bar.update(len(rows))
    return (*out["text"], *out["image"])
