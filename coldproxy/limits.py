"""Ceilings on what one request may carry, that no setting raises: the request schemas declare them (pydantic
``max_length``), the settings that lower them are bounded by them, and the routes' body limits are worked out from
those settings (``service/api/limits.py``)."""

MAX_DIM = 4096  # the longest vector; the package's own dimension is checked after parsing
MAX_LIST = 100_000  # IDs, candidates, vectors in one list
MAX_BATCH = 10_000  # items of one POST /v1/items:batch
MAX_EXCLUDE = 1000  # IDs a recommendation request may ask to leave out
MAX_HISTORY = 10_000  # items kept per user from POST /v1/users/{id}/interactions (and sent in one request)
