"""The core's small contracts: one error vocabulary with its statuses, the ID rule, graph names."""

from __future__ import annotations

import inspect

import pytest

from coldproxy import errors, graph_io
from coldproxy.ids import check_id


def test_every_error_is_a_coldproxy_error_with_a_4xx_or_5xx_status():
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass) if issubclass(c, Exception)]
    assert len(classes) >= 15
    for cls in classes:
        assert issubclass(cls, errors.ColdproxyError), cls
        assert 400 <= cls.status < 600, cls


def test_statuses_and_headers_of_the_cases_clients_retry_or_read():
    down = errors.StoreUnavailable("connection refused")
    assert (down.status, down.headers, down.detail) == (503, {"Retry-After": "1"}, "store unavailable; retry shortly")
    assert str(down) == "store unavailable: connection refused"  # the reason, for the log
    assert errors.QueueFull("full").detail == "overloaded: full" and errors.QueueFull("x").status == 503
    limited = errors.RateLimited("slow down", "3")
    assert (limited.status, limited.headers) == (429, {"Retry-After": "3"})
    unknown = errors.UnknownMembers(["a", "b"], "v1")
    assert unknown.status == 422 and unknown.detail["unknown_item_ids"] == ["a", "b"]
    assert isinstance(errors.ImageError("bad"), ValueError) and errors.PackageError("x").status == 422


@pytest.mark.parametrize("good", ["42", "item-1", "a.b:c_d", "x" * 128])
def test_valid_ids_pass(good):
    assert check_id(good) == good


@pytest.mark.parametrize("bad", ["", "has space", "x" * 129, "slash/", "é"])
def test_invalid_ids_are_a_422_naming_the_field(bad):
    with pytest.raises(errors.InvalidInput) as caught:
        check_id(bad, "bundle_id")
    assert caught.value.status == 422 and "bundle_id" in caught.value.detail


def test_graph_names_are_distinct_per_graph():
    for inputs, outputs in ((graph_io.PROXY_INPUTS, graph_io.PROXY_OUTPUTS), (graph_io.GATE_INPUTS, graph_io.GATE_OUTPUTS),
                            (graph_io.SAMPLER_INPUTS, graph_io.SAMPLER_OUTPUTS),
                            (graph_io.BUNDLE_GATE_INPUTS, graph_io.BUNDLE_GATE_OUTPUTS)):
        assert len(set(inputs)) == len(inputs) and not set(inputs) & set(outputs)
