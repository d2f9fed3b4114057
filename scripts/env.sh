# Sourced by scripts/main.sh and scripts/test.sh: a project virtualenv with everything from pyproject.toml.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${COLDPROXY_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null || PY=python3
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.coldproxy-installed"
if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ] || [ "$ROOT/requirements.lock" -nt "$stamp" ]; then
  # torch is pinned to the CPU build (torch==2.13.0); pip resolves it from the local wheel cache when present.
  # requirements.lock (scripts/lock.sh) fixes every version, so two installs a week apart are the same
  "$VENV/bin/pip" install --disable-pip-version-check -q -c "$ROOT/requirements.lock" -e "$ROOT[train,test,bench]"
  touch "$stamp"
fi
export PATH="$VENV/bin:$PATH"
cd "$ROOT"
