#!/bin/sh
# Configure $PACIFICA_SERVICE as the official images do, bring its schema up, serve it.
set -eu
service="$PACIFICA_SERVICE"
prefix=$(echo "$service" | tr '[:lower:]' '[:upper:]')
config="$HOME/config.ini"
export "${prefix}_CONFIG=$config" "${prefix}_CPCONFIG=/etc/pacifica/cpconfig.ini"
case "$service" in
  uniqueid)
    printf '[database]\npeewee_url = %s\n' "$PEEWEE_DATABASE_URL" >"$config"
    pacifica-uniqueid-cmd dbsync
    exec pacifica-uniqueid -a 0.0.0.0 -p 8051
    ;;
  metadata)
    printf '[database]\npeewee_url = %s\n[notifications]\ndisabled = True\n' \
      "$PEEWEE_DATABASE_URL" >"$config"
    pacifica-metadata-cmd dbsync
    exec pacifica-metadata -a 0.0.0.0 -p 8121
    ;;
  archiveinterface)
    printf '[posix]\nuse_id2filename = false\n' >"$config"
    exec pacifica-archiveinterface -a 0.0.0.0 -p 8080 -t posix --prefix /srv
    ;;
  policy)
    : >"$config"
    exec pacifica-policy -a 0.0.0.0 -p 8181 -c /etc/pacifica/cpconfig.ini
    ;;
  *)
    echo "PACIFICA_SERVICE must be uniqueid, metadata, archiveinterface or policy" >&2
    exit 64
    ;;
esac
