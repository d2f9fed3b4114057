"""coldproxy: proxy embeddings for cold-start items, aligned to a recommender's ID space.

This package is the no-torch core every stage shares, and it imports nothing else of ours: settings,
the model-package schemas and graph I/O names, preprocessing, anchors, IDs and errors. Training code
lives in ``models``, ONNX export in ``export``, the HTTP service in ``service``, the command line in
``coldproxy_cli``.
"""

__version__ = "0.1.0"
