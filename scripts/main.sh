#!/usr/bin/env bash
# Main job: evaluate the default model on MovieLens-posters if none exists, export its package, serve it on
# 127.0.0.1:8000, and refit it on all the data in the background (coldproxy up). Installs only what it needs.
COLDPROXY_EXTRAS="${COLDPROXY_EXTRAS:-train}"
source "$(dirname "$0")/env.sh"
exec coldproxy up "$@"
