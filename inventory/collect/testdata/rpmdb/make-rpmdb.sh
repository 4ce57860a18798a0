#!/usr/bin/env bash
# Rebuilds ../alma-host/var/lib/rpm/rpmdb.sqlite with Debian's rpm 4.18
# (apt-get install rpm): empty packages named like a RHEL 9 system's kernel
# and core packages, installed one second apart with --justdb.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for spec in "kernel-core 5.14.0 362.8.1.el9_3" "glibc 2.34 100.el9" "systemd 252 32.el9" \
            "kernel-core 5.14.0 427.13.1.el9_4" "kernel 5.14.0 427.13.1.el9_4"; do
  set -- $spec
  rpmbuild -bb --quiet --define "_topdir $work/top" --define "pname $1" --define "pver $2" \
    --define "prel $3" --define "_build_id_links none" "$here/fixture.spec"
done
mkdir "$work/db"
rpm --dbpath "$work/db" --initdb
for f in kernel-core-5.14.0-362.8.1 glibc systemd kernel-core-5.14.0-427.13.1 kernel-5.14.0; do
  rpm --dbpath "$work/db" -i --justdb --nodeps --ignorearch --ignoreos "$work"/top/RPMS/x86_64/$f*.rpm 2>/dev/null
  sleep 1
done
cp "$work/db/rpmdb.sqlite" "$here/../alma-host/var/lib/rpm/rpmdb.sqlite"
