#!/usr/bin/env bash
# Main job: train the default bundle on MovieLens-posters if none exists, export it, serve it on 127.0.0.1:8000.
source "$(dirname "$0")/env.sh"
exec coldproxy up "$@"
