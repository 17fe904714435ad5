#!/bin/sh
# Container entrypoint: `serve` (the default) applies migrations, then execs the
# server so it is the process that receives SIGTERM; anything else runs as a
# tasklease command (migrate, sweep, audit verify, ...).
set -eu

# The application folder (/app in the image), found from this script's place so
# that test/deploy/image.test.ts can run the image's files where it replays them.
app=$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd)

if [ "$#" -eq 0 ]; then
  set -- serve
fi

if [ "$1" = "serve" ]; then
  shift
  node "$app/dist/main.js" migrate "$@"
  exec node "$app/dist/main.js" serve "$@"
fi

exec node "$app/dist/main.js" "$@"
