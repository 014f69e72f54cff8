#!/bin/sh
# The image's entrypoint (see Dockerfile and docker-compose.yml).
#
#   docker-entrypoint.sh admin-token      make sure the admin token file exists, then print the token:
#                                         ADMIN_TOKEN if it is set (e.g. from .env), else the token kept in the
#                                         file from an earlier start, else a new random one (32 bytes, hex)
#   docker-entrypoint.sh <command> ...    run `exactly-once <command> ...`; when ADMIN_TOKEN is unset and
#                                         ADMIN_TOKEN_FILE names a file, ADMIN_TOKEN is read from it first
set -eu

if [ "${1:-}" = "admin-token" ]; then
  file=${ADMIN_TOKEN_FILE:?ADMIN_TOKEN_FILE must name the file that keeps the admin token}
  if [ -n "${ADMIN_TOKEN:-}" ]; then
    printf '%s' "$ADMIN_TOKEN" >"$file.tmp"
    mv "$file.tmp" "$file"
    echo "admin token: the ADMIN_TOKEN you set"
  elif [ -s "$file" ]; then
    echo "admin token (kept from an earlier start): $(cat "$file")"
  else
    # Written aside and renamed, so a reader never sees half a token.
    node -e "process.stdout.write(require('node:crypto').randomBytes(32).toString('hex'))" >"$file.tmp"
    mv "$file.tmp" "$file"
    echo "admin token (generated; set ADMIN_TOKEN in .env to choose your own): $(cat "$file")"
  fi
  exit 0
fi

if [ -z "${ADMIN_TOKEN:-}" ] && [ -n "${ADMIN_TOKEN_FILE:-}" ]; then
  ADMIN_TOKEN=$(cat "$ADMIN_TOKEN_FILE")
  export ADMIN_TOKEN
fi
exec node "$(dirname "$0")/../bin/exactly-once.js" "$@"
