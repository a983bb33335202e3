#!/bin/sh
# run-as-owner FOLDER... -- COMMAND [ARG...]
#
# The entrypoint of the bikecount containers (and, mounted, of the MLflow one): runs COMMAND as
# the owner of the bind-mounted FOLDERs, so that what a container writes into ./data,
# ./mlruns_dev or ./mlflow_artifacts belongs to whoever owns those folders on the host, and a
# folder owned by someone else never makes a container fail to write.
#
# - When root owns a FOLDER that holds files (the host user is root), COMMAND runs as root.
# - Otherwise the owner is that of the first FOLDER not owned by root, and a FOLDER owned by
#   root and empty (one Docker made because it was missing on the host) is handed to that
#   owner; when every FOLDER is such a one, the owner is uid 1000, the image's user.
# - A container started with `user:` (not root) runs COMMAND as it is.
set -eu

folders=""
while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do
    folders="$folders $1"
    shift
done
[ "$#" -gt 0 ] && shift  # the --
[ "$#" -gt 0 ] || { echo "usage: run-as-owner FOLDER... -- COMMAND [ARG...]" >&2; exit 64; }

[ "$(id -u)" = 0 ] || exec "$@"

is_empty() { [ -z "$(ls -A "$1" 2>/dev/null)" ]; }

owner=""
root_owns_files=false
for folder in $folders; do
    [ -d "$folder" ] || continue
    candidate=$(stat -c %u:%g "$folder")
    if [ "${candidate%%:*}" != 0 ]; then
        owner=${owner:-$candidate}
    elif ! is_empty "$folder"; then
        root_owns_files=true
    fi
done
"$root_owns_files" && exec "$@"
owner=${owner:-1000:1000}
uid=${owner%%:*}
gid=${owner##*:}

for folder in $folders; do
    if [ -d "$folder" ] && [ "$(stat -c %u "$folder")" = 0 ] && is_empty "$folder"; then
        chown "$uid:$gid" "$folder" 2>/dev/null || true  # not when mounted read-only
    fi
done
# A user name, a home and a working directory of the container's own that this user may write
# in (some programs, Airflow among them, refuse to run as a uid without a name).
name=$(getent passwd "$uid" | cut -d: -f1 || true)
home=$(getent passwd "$uid" | cut -d: -f6 || true)
if [ -z "$home" ] || [ ! -d "$home" ]; then
    home=/tmp/home-$uid
    mkdir -p "$home"
fi
if [ -z "$name" ]; then
    name=host-$uid
    echo "$name:x:$uid:$gid:owner of the mounted folders:$home:/bin/sh" >> /etc/passwd
    getent group "$gid" >/dev/null || echo "$name:x:$gid:" >> /etc/group
fi
chown "$uid:$gid" "$home"
if [ "$PWD" != / ] && ! mountpoint -q "$PWD"; then chown "$uid:$gid" "$PWD"; fi
export HOME="$home" USER="$name" LOGNAME="$name"
exec setpriv --reuid="$uid" --regid="$gid" --clear-groups -- "$@"
