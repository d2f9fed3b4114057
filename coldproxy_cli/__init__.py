"""The ``coldproxy`` command (``coldproxy_cli.commands``): the top layer, above every other package."""
