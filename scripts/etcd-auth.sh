#!/usr/bin/env bash
# Sets up etcd's user/password authentication for remotegpu on an external
# etcd cluster. The coordinators share one user with read and write access
# to the whole key prefix. Each GPU host gets a user whose agent may write
# only that host's info and status keys. Every command can run again: it
# creates what is missing, fixes what differs and otherwise reports
# "nothing changed".
# Passwords come from files and never appear on a command line or in the
# output.
set -euo pipefail

usage() {
	cat <<'EOF'
Usage: scripts/etcd-auth.sh COMMAND [ARGS] [OPTIONS]

Commands:
  init          create user root (when missing), role and user
                remotegpu-coordinator with read and write access to
                PREFIX/, then enable authentication
  add-host ID   create role and user remotegpu-agent-ID, which may read and
                write only PREFIX/hosts/ID/info and PREFIX/hosts/ID/status
  remove-host ID
                delete user and role remotegpu-agent-ID

Options (environment variable in brackets):
  --endpoints URLS     comma-separated etcd client URLs
                       [REMOTEGPU_ETCD_ENDPOINTS] (default http://127.0.0.1:2379)
  --cacert FILE        CA bundle that verifies etcd's certificate
                       [REMOTEGPU_ETCD_CACERT]
  --cert FILE          client certificate [REMOTEGPU_ETCD_CERT]
  --key FILE           key of --cert [REMOTEGPU_ETCD_KEY]
  --prefix PREFIX      remotegpu key prefix [REMOTEGPU_PREFIX]
                       (default /remotegpu)
  --timeout DURATION   limit of each etcd request, such as 15s or 500ms
                       (default 15s)
  --root-password-file FILE
                       password of etcd's root user [ETCD_ROOT_PASSWORD_FILE];
                       needed by init, and by every command once
                       authentication is enabled
  --coordinator-password-file FILE
                       password of remotegpu-coordinator (init)
  --password-file FILE password of remotegpu-agent-ID (add-host)
  -h, --help           print this help

A password file holds the password on its first line, without spaces; keep
it mode 0600. The daemons read the same files (REMOTEGPU_ETCD_PASSWORD_FILE).
etcdctl is $ETCDCTL when set, else 'go tool etcdctl' of this repository.
ETCDCTL_* variables of the caller are ignored.
EOF
}

die() {
	echo "etcd-auth.sh: $*" >&2
	exit 1
}

warn() {
	echo "etcd-auth.sh: warning: $*" >&2
}

usage_error() {
	echo "etcd-auth.sh: $*" >&2
	usage >&2
	exit 2
}

repo_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
command=
host_id=
endpoints=${REMOTEGPU_ETCD_ENDPOINTS:-http://127.0.0.1:2379}
cacert=${REMOTEGPU_ETCD_CACERT:-}
cert=${REMOTEGPU_ETCD_CERT:-}
key=${REMOTEGPU_ETCD_KEY:-}
prefix=${REMOTEGPU_PREFIX:-/remotegpu}
timeout=15s
root_password_file=${ETCD_ROOT_PASSWORD_FILE:-}
coordinator_password_file=
password_file=

coordinator_name=remotegpu-coordinator
etcdctl=
err_file=
changes=0
auth_enabled=0
# Credentials for administrative calls: root's once authentication is on.
admin_user=
admin_password=

parse_args() {
	local positional=()
	while (($# > 0)); do
		case $1 in
		-h | --help)
			usage
			exit 0
			;;
		--endpoints | --cacert | --cert | --key | --prefix | --timeout | \
			--root-password-file | --coordinator-password-file | \
			--password-file)
			if (($# < 2)); then
				usage_error "$1 needs a value"
			fi
			set_option "$1" "$2"
			shift
			;;
		--*=*) set_option "${1%%=*}" "${1#*=}" ;;
		-*) usage_error "unknown option '$1'" ;;
		*) positional+=("$1") ;;
		esac
		shift
	done

	if ((${#positional[@]} == 0)); then
		usage_error "missing command: use init, add-host or remove-host"
	fi
	command=${positional[0]}
	case $command in
	init)
		if ((${#positional[@]} != 1)); then
			usage_error "init takes no arguments, got '${positional[*]:1}'"
		fi
		;;
	add-host | remove-host)
		if ((${#positional[@]} != 2)); then
			usage_error "$command takes exactly one host ID"
		fi
		host_id=${positional[1]}
		;;
	*) usage_error "unknown command '$command': use init, add-host or remove-host" ;;
	esac
}

set_option() {
	case $1 in
	--endpoints) endpoints=$2 ;;
	--cacert) cacert=$2 ;;
	--cert) cert=$2 ;;
	--key) key=$2 ;;
	--prefix) prefix=$2 ;;
	--timeout) timeout=$2 ;;
	--root-password-file) root_password_file=$2 ;;
	--coordinator-password-file) coordinator_password_file=$2 ;;
	--password-file) password_file=$2 ;;
	*) usage_error "unknown option '$1'" ;;
	esac
}

# validate_prefix applies the daemons' rules for --prefix.
validate_prefix() {
	case $prefix in
	"") die "invalid prefix \"\": it must not be empty; use e.g. /remotegpu" ;;
	/) die "invalid prefix \"/\": use a named prefix such as /remotegpu" ;;
	/*/) die "invalid prefix \"$prefix\": remove the trailing \"/\"" ;;
	/*) ;;
	*) die "invalid prefix \"$prefix\": it must start with \"/\"" ;;
	esac
	if [[ $prefix == *[[:cntrl:][:space:]]* ]]; then
		die "invalid prefix \"$prefix\": it contains white space or a control character"
	fi
}

# validate_host_id applies the keyspace rules for host IDs, minus ':',
# which etcdctl would take as the separator of user and password.
validate_host_id() {
	local id=$1
	if [[ ! $id =~ ^[A-Za-z0-9_:-][A-Za-z0-9._:-]{0,127}$ ]]; then
		die "invalid host ID \"$id\": use 1 to 128 letters, digits, '.', '_' and '-', not starting with '.'"
	fi
	if [[ $id == *:* ]]; then
		die "invalid host ID \"$id\": etcdctl cannot create a user whose name contains ':'; give the agent a --host-id without ':'"
	fi
}

validate_connection() {
	if [[ -z $endpoints ]]; then
		die "no etcd endpoints: set --endpoints, e.g. https://10.0.0.11:2379"
	fi
	if [[ -n $cert && -z $key || -z $cert && -n $key ]]; then
		die "--cert and --key must be given together"
	fi
	if [[ ! $timeout =~ ^[1-9][0-9]*(ms|s|m)$ ]]; then
		die "invalid --timeout \"$timeout\": use a whole number with ms, s or m, such as 15s"
	fi
	local f
	for f in "$cacert" "$cert" "$key"; do
		if [[ -n $f && ! -r $f ]]; then
			die "cannot read TLS file $f: check the path and its permissions"
		fi
	done
}

# read_password stores the first line of file $1 in the variable named $2.
# etcdctl reads a new password with scanf("%s"), so white space would cut
# it short; such passwords are rejected rather than silently truncated.
read_password() {
	local file=$1 var=$2 line='' mode
	if [[ ! -f $file || ! -r $file ]]; then
		die "cannot read password file \"$file\": check the path and its permissions"
	fi
	IFS= read -r line <"$file" || true
	line=${line%$'\r'}
	if [[ -z $line ]]; then
		die "password file \"$file\" is empty: put the password on its first line"
	fi
	if [[ $line == *[[:space:]]* ]]; then
		die "the password in \"$file\" contains white space, which etcdctl cannot set; choose one without spaces or tabs"
	fi
	mode=$(stat -c %a "$file")
	if (((8#$mode & 8#077) != 0)); then
		warn "password file \"$file\" has mode $mode, and the remotegpu daemons refuse such a file; make it readable by its owner only: chmod 0600 \"$file\""
	fi
	printf -v "$var" '%s' "$line"
}

find_etcdctl() {
	if [[ -n ${ETCDCTL:-} ]]; then
		if [[ ! -x $ETCDCTL ]]; then
			die "ETCDCTL=$ETCDCTL is not an executable file"
		fi
		etcdctl=$ETCDCTL
		return
	fi
	if ! command -v go >/dev/null; then
		die "etcdctl not found: set ETCDCTL to an etcdctl binary, or install Go to use 'go tool etcdctl'"
	fi
	# 'go tool -n' builds the tool once and prints its path in the build cache.
	if ! etcdctl=$(cd "$repo_dir" && go tool -n etcdctl) || [[ ! -x $etcdctl ]]; then
		die "cannot build etcdctl with 'go tool etcdctl' in $repo_dir; set ETCDCTL to an etcdctl binary"
	fi
}

ctl_out=
ctl_err=

# ctl runs etcdctl as user $1 with password $2 (no credentials when $1 is
# empty) and the remaining arguments. It stores stdout in ctl_out and, on
# failure, etcdctl's error message in ctl_err. The password travels in
# etcdctl's environment, never on its command line.
ctl() {
	local user=$1 password=$2
	shift 2
	local args=(--endpoints="$endpoints" --dial-timeout=5s --command-timeout="$timeout")
	if [[ -n $cacert ]]; then args+=(--cacert="$cacert"); fi
	if [[ -n $cert ]]; then args+=(--cert="$cert" --key="$key"); fi
	args+=("$@")

	ctl_err=
	local rc=0
	if [[ -n $user ]]; then
		ctl_out=$(ETCDCTL_USER=$user ETCDCTL_PASSWORD=$password \
			"$etcdctl" "${args[@]}" 2>"$err_file") || rc=$?
	else
		ctl_out=$("$etcdctl" "${args[@]}" 2>"$err_file") || rc=$?
	fi
	if ((rc != 0)); then
		ctl_err=$(grep '^Error:' "$err_file" | tail -n 1)
		ctl_err=${ctl_err#Error: }
		if [[ -z $ctl_err ]]; then
			ctl_err=$(tail -n 1 "$err_file")
		fi
	fi
	return "$rc"
}

# admin runs etcdctl with the administrative credentials and stops the
# script when the call fails. $1 names the operation in the error message.
admin() {
	local operation=$1
	shift
	if ! ctl "$admin_user" "$admin_password" "$@"; then
		die "$operation: $ctl_err"
	fi
}

report() {
	echo "$*"
	changes=$((changes + 1))
}

detect_auth() {
	if ! ctl "" "" auth status; then
		die "cannot reach etcd at $endpoints: $ctl_err"
	fi
	if [[ $ctl_out == *"Authentication Status: true"* ]]; then
		auth_enabled=1
	fi
}

# use_root checks root's password and makes root the administrative user.
# It is required once authentication is on.
use_root() {
	local root_password
	if [[ -z $root_password_file ]]; then
		die "authentication is enabled on etcd: give root's password with --root-password-file FILE (or ETCD_ROOT_PASSWORD_FILE)"
	fi
	read_password "$root_password_file" root_password
	if ! ctl root "$root_password" auth status; then
		die "etcd rejected root with the password in \"$root_password_file\": $ctl_err"
	fi
	admin_user=root
	admin_password=$root_password
}

list_has() {
	local list=$1 name=$2
	grep -Fxq -- "$name" <<<"$list"
}

ensure_root_user() {
	local root_password
	read_password "$root_password_file" root_password
	admin "list users" user list
	if list_has "$ctl_out" root; then
		# Authentication is off, so anyone may set root's password. Set it
		# from the file so that it is known once authentication is on.
		admin "set the password of user root" user passwd root \
			--interactive=false < <(printf '%s\n' "$root_password")
		report "set the password of user root from $root_password_file"
	else
		admin "create user root" user add root \
			--interactive=false < <(printf '%s\n' "$root_password")
		report "created user root"
	fi
	ensure_user_role root root
}

ensure_role_exists() {
	local role=$1
	admin "list roles" role list
	if ! list_has "$ctl_out" "$role"; then
		admin "create role $role" role add "$role"
		report "created role $role"
	fi
}

# has_permission reports whether the "role get" output $1 lists key (or
# range) $3 in section $2, "read" or "write".
has_permission() {
	WANT=$'\t'$3 SECTION=$2 awk '
		$0 == "KV Read:" { section = "read"; next }
		$0 == "KV Write:" { section = "write"; next }
		section == ENVIRON["SECTION"] && $0 == ENVIRON["WANT"] { found = 1 }
		END { exit !found }' <<<"$1"
}

# ensure_permission grants readwrite on a key, or on every key under a
# prefix when $3 is "prefix", unless the role has it already.
ensure_permission() {
	local role=$1 key=$2 kind=${3:-key} shown=$2 flags=() described=$2
	if [[ $kind == prefix ]]; then
		# etcdctl prints a prefix as its range [key, key+1) and the prefix.
		shown="[$key, ${key%/}0) (prefix $key)"
		flags=(--prefix=true)
		described="every key under $key"
	fi
	admin "read role $role" role get "$role"
	if has_permission "$ctl_out" read "$shown" &&
		has_permission "$ctl_out" write "$shown"; then
		return
	fi
	admin "grant readwrite on $key to role $role" \
		role grant-permission "${flags[@]}" "$role" readwrite "$key"
	report "granted readwrite on $described to role $role"
}

# warn_extra_permissions warns when a role has more permissions than the
# remotegpu ones given as arguments.
warn_extra_permissions() {
	local role=$1 count
	shift
	admin "read role $role" role get "$role"
	count=$(grep -c $'^\t' <<<"$ctl_out" || true)
	if ((count != 2 * $#)); then
		warn "role $role has permissions beyond remotegpu's; review them with 'etcdctl role get $role':"
		echo "$ctl_out" >&2
	fi
}

ensure_user_role() {
	local user=$1 role=$2
	admin "read user $user" user get "$user"
	local roles
	roles=$(sed -n 's/^Roles://p' <<<"$ctl_out" | tr ' ' '\n')
	if ! list_has "$roles" "$role"; then
		admin "grant role $role to user $user" user grant-role "$user" "$role"
		report "granted role $role to user $user"
	fi
}

# ensure_user creates user $1 with password $2, read from file $4, and
# grants role $3. For an existing user it logs in with the password and sets
# it only when etcd rejects it, so a second run changes nothing.
ensure_user() {
	local user=$1 password=$2 role=$3 source_file=$4
	admin "list users" user list
	if ! list_has "$ctl_out" "$user"; then
		admin "create user $user" user add "$user" \
			--interactive=false < <(printf '%s\n' "$password")
		report "created user $user"
	elif ((auth_enabled)) && ctl "$user" "$password" auth status; then
		: # the password in the file works already
	elif ((auth_enabled)) && [[ $ctl_err != *"authentication failed"* ]]; then
		die "log in as $user: $ctl_err"
	else
		admin "set the password of user $user" user passwd "$user" \
			--interactive=false < <(printf '%s\n' "$password")
		report "set the password of user $user from $source_file"
	fi
	ensure_user_role "$user" "$role"
}

# check_access logs in as user $1 and reads key $3, with --prefix when $4
# is "prefix", to prove the grants work.
check_access() {
	local user=$1 password=$2 key=$3 kind=${4:-key} flags=(--count-only --write-out=fields)
	if [[ $kind == prefix ]]; then flags+=(--prefix); fi
	if ! ctl "$user" "$password" get "${flags[@]}" -- "$key"; then
		die "user $user cannot read $key after setup: $ctl_err"
	fi
	echo "checked: user $user can read $key"
}

cmd_init() {
	local coordinator_password
	if [[ -z $coordinator_password_file ]]; then
		usage_error "init needs --coordinator-password-file FILE"
	fi
	read_password "$coordinator_password_file" coordinator_password

	detect_auth
	if ((auth_enabled)); then
		use_root
	else
		if [[ -z $root_password_file ]]; then
			die "init needs --root-password-file FILE: etcd enables authentication only with a root user"
		fi
		ensure_root_user
	fi

	ensure_role_exists "$coordinator_name"
	ensure_permission "$coordinator_name" "$prefix/" prefix
	warn_extra_permissions "$coordinator_name" "$prefix/"
	ensure_user "$coordinator_name" "$coordinator_password" \
		"$coordinator_name" "$coordinator_password_file"

	if ((!auth_enabled)); then
		admin "enable authentication" auth enable
		report "enabled authentication"
		auth_enabled=1
		use_root
	fi
	check_access "$coordinator_name" "$coordinator_password" "$prefix/" prefix
}

cmd_add_host() {
	local password role=remotegpu-agent-$host_id
	local info=$prefix/hosts/$host_id/info status=$prefix/hosts/$host_id/status
	if [[ -z $password_file ]]; then
		usage_error "add-host needs --password-file FILE"
	fi
	read_password "$password_file" password

	detect_auth
	if ((auth_enabled)); then
		use_root
	else
		warn "authentication is not enabled on etcd yet; run init to enable it"
	fi

	ensure_role_exists "$role"
	ensure_permission "$role" "$info"
	ensure_permission "$role" "$status"
	warn_extra_permissions "$role" "$info" "$status"
	ensure_user "$role" "$password" "$role" "$password_file"
	if ((auth_enabled)); then
		check_access "$role" "$password" "$info"
	fi
}

cmd_remove_host() {
	local name=remotegpu-agent-$host_id
	detect_auth
	if ((auth_enabled)); then
		use_root
	fi
	admin "list users" user list
	if list_has "$ctl_out" "$name"; then
		admin "delete user $name" user delete "$name"
		report "deleted user $name"
	fi
	admin "list roles" role list
	if list_has "$ctl_out" "$name"; then
		admin "delete role $name" role delete "$name"
		report "deleted role $name"
	fi
}

main() {
	parse_args "$@"
	validate_prefix
	validate_connection
	if [[ -n $host_id ]]; then
		validate_host_id "$host_id"
	fi

	# Inherited ETCDCTL_* settings would change what etcdctl does, and
	# ETCDCTL_DEBUG would print the password.
	local var
	for var in $(compgen -e); do
		if [[ $var == ETCDCTL_* ]]; then unset "$var"; fi
	done
	exec </dev/null
	find_etcdctl
	err_file=$(mktemp)
	trap 'rm -f "$err_file"' EXIT

	case $command in
	init) cmd_init ;;
	add-host) cmd_add_host ;;
	remove-host) cmd_remove_host ;;
	esac
	if ((changes == 0)); then
		echo "nothing changed: etcd is already set up"
	else
		echo "$changes change(s) made"
	fi
}

main "$@"
