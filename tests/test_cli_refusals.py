"""The command line refuses in one line: bad settings, missing data and an insecure bind print what is wrong and exit
non-zero, without a traceback; ``--debug`` shows the traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ENV = {k: v for k, v in os.environ.items() if not k.startswith("COLDPROXY_")}


def coldproxy(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "coldproxy_cli", *args], capture_output=True, text=True, timeout=120, env=ENV | env
    )


@pytest.mark.parametrize(
    "args, env, says",
    [
        (("serve", "--host", "0.0.0.0"), {}, "refusing to serve on 0.0.0.0 without API keys"),
        (("serve",), {"COLDPROXY_MAX_BATCH_ITEMS": "many"}, "invalid settings: max_batch_items"),
        (("export", "--work-dir", "/nonexistent/work"), {}, "no checkpoint in /nonexistent/work"),
    ],
)
def test_a_refusal_is_one_line_and_a_non_zero_exit(args, env, says):
    run = coldproxy(*args, **env)
    last = run.stderr.strip().splitlines()[-1]
    assert run.returncode != 0 and "Traceback" not in run.stderr
    assert last.startswith(f"coldproxy {args[0]}: ") and says in last and last.endswith("(--debug shows where)")


def test_debug_shows_the_traceback():
    run = coldproxy("serve", "--host", "0.0.0.0", "--debug")
    assert run.returncode != 0 and "Traceback" in run.stderr and "InsecureSettings" in run.stderr
