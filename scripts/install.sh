#!/usr/bin/env bash
# Installs the remotegpu daemons as systemd services: the binaries built by
# 'make build', their units and default environment files, and the system
# user they run as. Running it again changes nothing unless a source file
# changed; an existing environment file is never overwritten.
set -euo pipefail

usage() {
	cat <<'EOF'
Usage: scripts/install.sh [OPTIONS]

Installs remotegpu-agent and remotegpu-coordinator as systemd services.

  /usr/local/bin/remotegpu-{agent,coordinator}          from bin/ (make build)
  /etc/systemd/system/remotegpu-{agent,coordinator}.service
  /etc/remotegpu/{agent,coordinator}.env                 only when missing
  system user and group "remotegpu"                      only when missing

Options:
  --agent-only        install or uninstall only the agent
  --coordinator-only  install or uninstall only the coordinator
  --uninstall         remove the binaries and units; keep config and data
  --purge             with --uninstall, also remove the environment files,
                      the coordinator's data in /var/lib/remotegpu and,
                      when both daemons are removed, the remotegpu user
  --root DIR          install into DIR instead of / (for packaging and
                      tests); creates no user and runs no systemctl
  --bin-src DIR       take the binaries from DIR (default: bin/ of this
                      repository)
  -h, --help          print this help
EOF
}

die() {
	echo "install.sh: $*" >&2
	exit 1
}

usage_error() {
	echo "install.sh: $*" >&2
	usage >&2
	exit 2
}

repo_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
root=
bin_src=$repo_dir/bin
action=install
purge=0
components=(agent coordinator)
changed=0

parse_args() {
	local only=
	while (($# > 0)); do
		case $1 in
		--agent-only | --coordinator-only)
			if [[ -n $only && $only != "$1" ]]; then
				usage_error "--agent-only and --coordinator-only exclude each other"
			fi
			only=$1
			if [[ $1 == --agent-only ]]; then
				components=(agent)
			else
				components=(coordinator)
			fi
			;;
		--uninstall) action=uninstall ;;
		--purge) purge=1 ;;
		--root | --bin-src)
			if (($# < 2)) || [[ -z $2 ]]; then
				usage_error "$1 needs a directory"
			fi
			if [[ $1 == --root ]]; then root=${2%/}; else bin_src=$2; fi
			shift
			;;
		--root=* | --bin-src=*)
			usage_error "write '${1%%=*} DIR' with a space instead of '$1'"
			;;
		-h | --help)
			usage
			exit 0
			;;
		*) usage_error "unknown option '$1'" ;;
		esac
		shift
	done
	if ((purge)) && [[ $action != uninstall ]]; then
		usage_error "--purge works only with --uninstall"
	fi
}

# live is true when the script changes the running system rather than a
# tree under --root.
live() { [[ -z $root ]]; }

check_privileges() {
	if live && ((EUID != 0)); then
		die "installing into / needs root; run it with sudo, or pass --root DIR"
	fi
	if [[ -n $root && ! -d $root ]]; then
		die "--root $root is not a directory; create it first"
	fi
}

# report prints one action and counts it as a change unless it is
# "unchanged", "kept", "skipped" or "absent".
report() {
	printf '%-10s %s\n' "$1" "$2"
	case $1 in
	unchanged | kept | skipped | absent) ;;
	*) changed=$((changed + 1)) ;;
	esac
}

# make_parent creates the folder of $1 with mode 0755 when it is missing. An
# existing folder keeps its mode, which the operator may have narrowed.
make_parent() {
	local dir
	dir=$(dirname "$1")
	if [[ ! -d $dir ]]; then
		install -d -m 0755 "$dir"
	fi
}

# install_file copies src to dest with mode, through a temporary file and a
# rename, so a running daemon's binary is replaced rather than rewritten.
install_file() {
	local src=$1 dest=$2 mode=$3
	if [[ -f $dest ]] && cmp -s "$src" "$dest" &&
		[[ $(stat -c %a "$dest") == "${mode#0}" ]]; then
		report unchanged "$dest"
		return
	fi
	local verb=installed
	if [[ -e $dest ]]; then
		verb=updated
	fi
	make_parent "$dest"
	install -m "$mode" "$src" "$dest.tmp.$$"
	mv -f "$dest.tmp.$$" "$dest"
	report "$verb" "$dest"
}

# install_config copies a default environment file unless one exists: it is
# the operator's file from then on.
install_config() {
	local src=$1 dest=$2
	if [[ -e $dest ]]; then
		report kept "$dest (existing config is never overwritten)"
		return
	fi
	make_parent "$dest"
	install -m 0640 "$src" "$dest"
	report installed "$dest"
}

ensure_user() {
	if ! live; then
		report skipped "creating system user remotegpu (--root given)"
		return
	fi
	if getent passwd remotegpu >/dev/null; then
		report unchanged "system user remotegpu"
		return
	fi
	local nologin
	nologin=$(command -v nologin || echo /usr/sbin/nologin)
	useradd --system --user-group --no-create-home \
		--home-dir /var/lib/remotegpu --shell "$nologin" \
		--comment "remotegpu daemons" remotegpu
	report created "system user remotegpu"
}

sources_of() {
	local c=$1
	printf '%s\n' "$bin_src/remotegpu-$c" \
		"$repo_dir/deploy/systemd/remotegpu-$c.service" \
		"$repo_dir/deploy/config/$c.env"
}

do_install() {
	# Check every source first, so a missing one leaves nothing half done.
	local c src
	for c in "${components[@]}"; do
		while read -r src; do
			[[ -f $src ]] || die "missing $src; run 'make build' first, or pass --bin-src DIR"
		done < <(sources_of "$c")
		if [[ ! -x $bin_src/remotegpu-$c ]]; then
			die "$bin_src/remotegpu-$c is not executable; rebuild it with 'make build'"
		fi
	done

	ensure_user
	for c in "${components[@]}"; do
		install_file "$bin_src/remotegpu-$c" \
			"$root/usr/local/bin/remotegpu-$c" 0755
		install_file "$repo_dir/deploy/systemd/remotegpu-$c.service" \
			"$root/etc/systemd/system/remotegpu-$c.service" 0644
		install_config "$repo_dir/deploy/config/$c.env" \
			"$root/etc/remotegpu/$c.env"
	done

	if ((changed == 0)); then
		echo "nothing changed: remotegpu is already installed${root:+ in $root}"
		return
	fi
	echo "$changed change(s) made${root:+ in $root}"
	print_next_steps
}

print_next_steps() {
	local c units=()
	echo
	echo "Next steps:"
	for c in "${components[@]}"; do
		echo "  - edit /etc/remotegpu/$c.env (etcd endpoints, TLS files, credentials)"
		units+=("remotegpu-$c.service")
	done
	echo "  - put etcd password files in /etc/remotegpu, owned by remotegpu, mode 0600"
	echo "  - systemctl daemon-reload"
	echo "  - systemctl enable --now ${units[*]}"
	echo "  - after an upgrade: systemctl restart ${units[*]}"
}

remove_path() {
	if [[ -e $1 || -L $1 ]]; then
		rm -f -- "$1"
		report removed "$1"
	else
		report absent "$1"
	fi
}

# stop_unit disables and stops a unit on the running system before its file
# goes, so no orphaned service keeps running.
stop_unit() {
	local unit=$1
	if ! live || [[ ! -d /run/systemd/system ]] ||
		[[ ! -e /etc/systemd/system/$unit ]]; then
		return 0
	fi
	if systemctl disable --now "$unit"; then
		report stopped "$unit"
	else
		echo "install.sh: warning: 'systemctl disable --now $unit' failed; continuing" >&2
	fi
}

do_uninstall() {
	local c link
	for c in "${components[@]}"; do
		stop_unit "remotegpu-$c.service"
		# Links left by 'systemctl enable' (kept when systemd is not running).
		for link in "$root"/etc/systemd/system/*.wants/"remotegpu-$c.service"; do
			if [[ -L $link ]]; then
				remove_path "$link"
			fi
		done
		remove_path "$root/etc/systemd/system/remotegpu-$c.service"
		remove_path "$root/usr/local/bin/remotegpu-$c"
	done
	if ((purge)); then
		do_purge
	fi

	if ((changed == 0)); then
		echo "nothing changed: remotegpu was not installed${root:+ in $root}"
		return
	fi
	echo "$changed change(s) made${root:+ in $root}"
	if live; then
		echo "Run 'systemctl daemon-reload' so systemd forgets the removed units."
	fi
	if ((!purge)); then
		echo "Kept $root/etc/remotegpu and $root/var/lib/remotegpu;" \
			"--uninstall --purge removes them."
	fi
}

do_purge() {
	local c conf_dir=$root/etc/remotegpu
	for c in "${components[@]}"; do
		remove_path "$conf_dir/$c.env"
		if [[ $c == coordinator && -d $root/var/lib/remotegpu ]]; then
			rm -rf -- "$root/var/lib/remotegpu"
			report removed "$root/var/lib/remotegpu (embedded etcd data)"
		fi
	done
	if [[ -d $conf_dir ]]; then
		if rmdir -- "$conf_dir" 2>/dev/null; then
			report removed "$conf_dir"
		else
			report kept "$conf_dir (it contains files this script did not install)"
		fi
	fi
	remove_user
}

remove_user() {
	if ! live; then
		return 0
	fi
	local c
	for c in agent coordinator; do
		if [[ -e /etc/systemd/system/remotegpu-$c.service ]]; then
			# The other daemon still runs as this user.
			return 0
		fi
	done
	if getent passwd remotegpu >/dev/null; then
		userdel remotegpu
		report removed "system user remotegpu"
	fi
}

main() {
	parse_args "$@"
	check_privileges
	if [[ $action == install ]]; then
		do_install
	else
		do_uninstall
	fi
}

main "$@"
