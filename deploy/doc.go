// Package deploy contains the files that run remotegpu on servers: systemd
// units in systemd/ and default environment files in config/. Its tests
// check those files and the scripts scripts/install.sh and
// scripts/etcd-auth.sh.
//
// The tests check that every unit passes "systemd-analyze verify" without
// a warning and carries the directives the daemons rely on (Type=notify,
// WatchdogSec, the environment file under /etc/remotegpu, the hardening
// set). They check that the environment files list every flag of the
// daemons with its default, and that install.sh installs into a --root
// tree idempotently and uninstalls exactly what it installed. Against a
// real etcd member they prove that the users created by etcd-auth.sh can
// do what the daemons need and nothing more, and they run both daemons
// logged in as those users.
//
// The units are not started under a real systemd here, so the hardening
// settings and sd_notify are not exercised against the running daemons.
//
// The package has no Go API.
package deploy
