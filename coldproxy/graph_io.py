"""Input and output names of every ONNX graph in a model package: the contract between ``export``,
which writes the graphs with these names, and ``service``, which feeds them. One place, so the two
cannot drift apart.

* text encoder:  input_ids, attention_mask [B, L] int64  -> text_features [B, 384], text_layers [B, 7, 384]
* image encoder: pixels [B, 3, 224, 224] float32         -> image_features [B, 1280], image_stages [B, 784]
* proxy model:   text_features, image_features, text_layers, image_stages, modality_mask [B, 2]
                 -> proxy [B, d], fusion_weights [B, 2] (text, image)
* sampler:       anchor [B, d], condition [B, d] -> diffusion [B, d]  (DPM-Solver++ steps unrolled)
* gate:          gate_features [B, 3], expert_available [B, 4], id_embedding, proxy, diffusion, anchor [B, d]
                 -> embedding [B, d], expert_weights [B, 4] (id, proxy, diffusion, anchor); packages built
                 before the anchor expert have no ``anchor`` input and 3 weights
* bundle gate:   bundle_features [B, 1], item_features [B, 2], bundle_prior, bundle_diffusion, item_prior,
                 item_diffusion [B, d] -> embedding [B, 2d], view_weights, bundle_view_weights,
                 item_view_weights [B, 2]
"""

from __future__ import annotations

TEXT_INPUTS = ["input_ids", "attention_mask"]
TEXT_OUTPUTS = ["text_features", "text_layers"]
IMAGE_INPUTS = ["pixels"]
IMAGE_OUTPUTS = ["image_features", "image_stages"]
PROXY_INPUTS = ["text_features", "image_features", "text_layers", "image_stages", "modality_mask"]
PROXY_OUTPUTS = ["proxy", "fusion_weights"]
SAMPLER_INPUTS = ["anchor", "condition"]
SAMPLER_OUTPUTS = ["diffusion"]
GATE_INPUTS = ["gate_features", "expert_available", "id_embedding", "proxy", "diffusion", "anchor"]
GATE_OUTPUTS = ["embedding", "expert_weights"]
BUNDLE_GATE_INPUTS = [
    "bundle_features",
    "item_features",
    "bundle_prior",
    "bundle_diffusion",
    "item_prior",
    "item_diffusion",
]
BUNDLE_GATE_OUTPUTS = ["embedding", "view_weights", "bundle_view_weights", "item_view_weights"]
