"""``python -m coldproxy_cli``."""

from coldproxy_cli.commands import main

main()
