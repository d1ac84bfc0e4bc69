#!/usr/bin/env bash
# Runs remotegpu on this machine: the coordinator with its embedded etcd and
# one agent reporting this machine's real CPU, memory and GPUs. It waits
# until the host is healthy, makes an allocation, prints the host table and
# keeps both daemons running until Ctrl-C.
#
# Settings (environment):
#   RUN_DIR          state and logs (default .run)
#   API_ADDR         coordinator API listener (default 127.0.0.1:8080)
#   ETCD_CLIENT_URL  embedded etcd client URL (default http://127.0.0.1:2379)
#   ETCD_PEER_URL    embedded etcd peer URL (default http://127.0.0.1:2380)
set -euo pipefail
cd "$(dirname "$0")/.."

run_dir=${RUN_DIR:-.run}
api_addr=${API_ADDR:-127.0.0.1:8080}
etcd_client=${ETCD_CLIENT_URL:-http://127.0.0.1:2379}
etcd_peer=${ETCD_PEER_URL:-http://127.0.0.1:2380}
coord=bin/remotegpu-coordinator
agent=bin/remotegpu-agent
ctl=("$coord" --addr "http://$api_addr")

for b in "$coord" "$agent"; do
	[ -x "$b" ] || { echo "run: $b is missing; run 'make build' first" >&2; exit 1; }
done
mkdir -p "$run_dir"

# ready_check asks /readyz with curl, or lists hosts where curl is missing.
ready_check() {
	if command -v curl >/dev/null 2>&1; then
		curl -fsS "http://$api_addr/readyz" >/dev/null 2>&1
	else
		"${ctl[@]}" hosts --json >/dev/null 2>&1
	fi
}

pids=()
alloc_id=
stop() {
	trap - INT TERM EXIT
	echo
	if [ -n "$alloc_id" ]; then
		echo "run: releasing $alloc_id"
		"${ctl[@]}" release "$alloc_id" >/dev/null || true
	fi
	echo "run: stopping the agent and the coordinator"
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		kill -TERM "${pids[i]}" 2>/dev/null || true
		wait "${pids[i]}" 2>/dev/null || true
	done
}
# Ctrl-C is the normal way to end a run, so it exits 0 once everything
# has stopped; make would otherwise report "Error 130".
trap 'stop; exit 0' INT TERM
trap stop EXIT

echo "run: starting the coordinator (embedded etcd at $etcd_client, API at http://$api_addr)"
# setsid keeps Ctrl-C away from the daemons, so that stop() can end the
# agent before the coordinator and its embedded etcd.
setsid "$coord" serve \
	--data-dir "$run_dir/etcd" \
	--etcd-listen-client "$etcd_client" \
	--etcd-listen-peer "$etcd_peer" \
	--listen "$api_addr" \
	>"$run_dir/coordinator.log" 2>&1 &
pids+=($!)

ready=
for _ in $(seq 1 100); do
	if ! kill -0 "${pids[0]}" 2>/dev/null; then
		echo "run: the coordinator exited; its log ($run_dir/coordinator.log) ends with:" >&2
		tail -n 20 "$run_dir/coordinator.log" >&2
		exit 1
	fi
	if ready_check; then
		ready=1
		break
	fi
	sleep 0.2
done
[ -n "$ready" ] || { echo "run: the coordinator did not become ready in 20 s; see $run_dir/coordinator.log" >&2; exit 1; }

echo "run: starting the agent"
setsid "$agent" run --etcd-endpoints "$etcd_client" >"$run_dir/agent.log" 2>&1 &
pids+=($!)

healthy=
for _ in $(seq 1 100); do
	if ! kill -0 "${pids[1]}" 2>/dev/null; then
		echo "run: the agent exited; its log ($run_dir/agent.log) ends with:" >&2
		tail -n 20 "$run_dir/agent.log" >&2
		exit 1
	fi
	if "${ctl[@]}" hosts --json 2>/dev/null | grep -q '"health": *"healthy"'; then
		healthy=1
		break
	fi
	sleep 0.2
done
[ -n "$healthy" ] || { echo "run: the host did not turn healthy in 20 s; see $run_dir/agent.log" >&2; exit 1; }

gpus=0
if "${ctl[@]}" hosts --json | grep -q '"total_gpu": *[1-9]'; then
	gpus=1
fi
# An earlier run that was killed before it could release leaves its
# allocation in $run_dir; free it so repeated runs keep working.
for stale in $("${ctl[@]}" allocations --owner make-run --state active --json |
	sed -n 's/^ *"id": *"\(alloc-[^"]*\)".*/\1/p'); do
	echo "run: releasing $stale, left by an earlier run"
	"${ctl[@]}" release "$stale" >/dev/null
done

echo "run: allocating 1 CPU, 1 GiB and $gpus GPU"
alloc_json=$("${ctl[@]}" allocate --cpu 1 --memory 1GiB --gpu "$gpus" --owner make-run --json)
alloc_id=$(printf '%s\n' "$alloc_json" | sed -n 's/^ *"id": *"\(alloc-[^"]*\)".*/\1/p' | head -n 1)
"${ctl[@]}" allocations --owner make-run --state active

echo
"${ctl[@]}" hosts
echo
echo "run: logs are in $run_dir/; try '$coord hosts' or '$coord allocations' in another shell."
echo "run: press Ctrl-C to stop; the allocation is released on the way out."
wait "${pids[@]}"
