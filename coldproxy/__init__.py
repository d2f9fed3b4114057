"""coldproxy: proxy embeddings for cold-start items, aligned to a recommender's ID space.

This package holds what every stage shares and what must not pull in torch: settings, the
bundle schema, preprocessing constants and the command line. Training code lives in
``models``, ONNX export in ``export``, the HTTP service in ``service``.
"""

__version__ = "0.1.0"
