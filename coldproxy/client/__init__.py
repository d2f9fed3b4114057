"""A Python client for the coldproxy HTTP API: ``Client`` (sync) and ``AsyncClient``, typed results (the models of
``coldproxy.protocol`` and ``coldproxy.bundle_protocol``), the API key as a Bearer header, retries on 429/503 that
honour ``Retry-After``, and every refusal raised as ``ServiceError`` with the service's ``detail``.

    from coldproxy.client import Client
    with Client("http://127.0.0.1:8000", api_key="...") as cp:
        cp.post_item("new-1", text="A quiet thriller", image="poster.jpg")
        cp.recommend(user_id="42", k=20, only="new")
"""

from coldproxy.client.calls import Item
from coldproxy.client.clients import AsyncClient, Client
from coldproxy.client.http import Retry, ServiceError

__all__ = ["AsyncClient", "Client", "Item", "Retry", "ServiceError"]
