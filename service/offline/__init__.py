"""Offline embedding of a whole catalogue (``coldproxy embed``): the service's own ONNX pipeline without HTTP, run
in this process on every core (``engine=local``) or on a Ray cluster's actors (``engine=ray``), into a partitioned
Parquet dataset or the service's Redis store. ``catalogue`` reads the rows, ``worker`` embeds a batch of them (the
same code in both engines), ``sinks`` write the results and say what an earlier run already wrote, ``engines``
drives them."""
