#!/bin/sh
# Container entrypoint: `serve` (the default) applies migrations, then execs the
# server so it is the process that receives SIGTERM; anything else runs as a
# tasklease command (migrate, sweep, audit verify, ...).
set -eu

if [ "$#" -eq 0 ]; then
  set -- serve
fi

if [ "$1" = "serve" ]; then
  shift
  node /app/dist/main.js migrate "$@"
  exec node /app/dist/main.js serve "$@"
fi

exec node /app/dist/main.js "$@"
