# Sourced by scripts/main.sh and scripts/test.sh: a project virtualenv with pyproject.toml's dependencies and the
# extras the caller needs (COLDPROXY_EXTRAS; default: train,test,bench). The main job installs only "train"; the
# tests add the rest to the same virtualenv. The stamp file lists the extras installed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${COLDPROXY_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null || PY=python3
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.coldproxy-installed"
want="${COLDPROXY_EXTRAS:-train,test,bench}"
have="$(cat "$stamp" 2>/dev/null || true)"
extras="$(printf '%s,%s' "$have" "$want" | tr ',' '\n' | sed '/^$/d' | sort -u | paste -sd, -)"
# COLDPROXY_VENV_FROZEN (bench/up.py reusing a virtualenv): an installed one is used as it is
if [ -n "${COLDPROXY_VENV_FROZEN:-}" ] && [ -f "$stamp" ]; then
  :
elif [ ! -f "$stamp" ] || [ "$extras" != "$have" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ] \
   || [ "$ROOT/requirements.lock" -nt "$stamp" ]; then
  # torch is pinned to the CPU build (torch==2.13.0); pip resolves it from the local wheel cache when present.
  # requirements.lock (scripts/lock.sh) fixes every version, so two installs a week apart are the same
  "$VENV/bin/pip" install --disable-pip-version-check -q -c "$ROOT/requirements.lock" -e "$ROOT[$extras]"
  echo "$extras" > "$stamp"
fi
export PATH="$VENV/bin:$PATH"
cd "$ROOT"
