#!/usr/bin/env bash
# The load benchmark: the same workload of small signed RPC calls over keep-alive connections,
# on this machine, in one run, through: nothing (direct), tinyproxy (C forward proxy),
# haproxy (reverse proxy), idemproxy (read-only calls: verify + re-sign), idemproxy (token
# injection + dedupe + re-sign), idemproxy through CONNECT + TLS interception.
# Upstream: `idemproxy simulate --static`, a fixed answer that checks nothing.
#
#   bench/load.sh            # DURATION=10 CONNECTIONS=32 by default
#
# Prints a Markdown table (req/s, p50/p99, CPU per request and peak RSS of the proxy process),
# the half-load latency comparison, and idemproxy's idle RSS and RSS with 1,000 connections.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-32}
need=()
command -v tinyproxy >/dev/null 2>&1 || need+=(tinyproxy)
command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
if [ ${#need[@]} -gt 0 ]; then
    echo "bench/load.sh: apt-get install ${need[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
cargo build --release --locked --bin idemproxy --example loadgen >&2
BIN=target/release/idemproxy
GEN=target/release/examples/loadgen

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }

UP=$(free_port); $BIN simulate --static --listen "127.0.0.1:$UP" 2>/dev/null & pids+=($!); wait_port "$UP"

TP=$(free_port)
cat > "$work/tinyproxy.conf" <<CONF
Port $TP
Listen 127.0.0.1
Timeout 60
MaxClients 1024
LogLevel Critical
DisableViaHeader Yes
CONF
tinyproxy -d -c "$work/tinyproxy.conf" >/dev/null 2>&1 & pids+=($!); TINY=$!; wait_port "$TP"

HP=$(free_port)
cat > "$work/haproxy.cfg" <<CONF
global
    maxconn 4096
    nbthread 2
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    option http-keep-alive
frontend fe
    bind 127.0.0.1:$HP
    default_backend be
backend be
    server up 127.0.0.1:$UP maxconn 1024
CONF
haproxy -db -f "$work/haproxy.cfg" >/dev/null 2>&1 & pids+=($!); HAP=$!; wait_port "$HP"

$BIN ca init --dir "$work/certs" >/dev/null
start_idemproxy() {
    local port=$1
    cat > "$work/idemproxy-$port.toml" <<CONF
[proxy]
listen = "127.0.0.1:$port"
[[upstreams]]
hosts = ["gpdb.aliyuncs.com"]
connect_to = "127.0.0.1:$UP"
scheme = "http"
[[credentials]]
access_key_id = "testid"
access_key_secret = "testsecret"
[tls]
ca_cert = "$work/certs/ca.pem"
ca_key = "$work/certs/ca-key.pem"
[dedupe]
store = "memory"
[admin]
listen = "off"
# The default limit (1000/s per AccessKey + region + action, gpdb's documented quota) would cap
# this single-key workload; the benchmark measures the proxy, so the limiter runs but never waits.
[limiter]
max_rate = 10000000.0
[log]
level = "warn"
CONF
    env ${IDEMPROXY_ENV:-} $BIN --config "$work/idemproxy-$port.toml" 2>"$work/idemproxy-$port.log" & pids+=($!)
    wait_port "$port"
}
IP=$(free_port); start_idemproxy "$IP"; IDEM=${pids[-1]}

run() { # name pid mode port kind [extra loadgen args]
    local name=$1 pid=$2 mode=$3 port=$4 kind=$5; shift 5
    local before after out
    before=$( [ "$pid" = - ] && echo 0 || cpu_ticks "$pid")
    out=$($GEN --target "127.0.0.1:$port" --mode "$mode" --kind "$kind" --connections "$CONNECTIONS" --duration "$DURATION" --ca "$work/certs/ca.pem" "$@")
    after=$( [ "$pid" = - ] && echo 0 || cpu_ticks "$pid")
    python3 - "$name" "$out" "$before" "$after" "$( [ "$pid" = - ] && echo 0 || rss_kib "$pid" VmHWM)" <<'PY'
import json, os, sys
name, out, before, after, hwm = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
hz = os.sysconf("SC_CLK_TCK")
cpu_us = (after - before) / hz * 1e6 / max(out["requests"], 1)
ok = out["statuses"].get("200", 0)
print(json.dumps({"name": name, "rps": out["rps"], "p50_us": out["p50_us"], "p99_us": out["p99_us"],
                  "cpu_us_per_req": round(cpu_us, 1) if before or after else None,
                  "peak_rss_mib": round(hwm / 1024, 1) if hwm else None,
                  "ok": ok, "errors": out["errors"], "statuses": out["statuses"]}))
PY
}

results=()
results+=("$(run direct - direct "$UP" create)")
# tinyproxy resolves the request's host itself (no connect_to): send it the upstream's address.
results+=("$(run tinyproxy "$TINY" forward "$TP" create --host "127.0.0.1:$UP")")
results+=("$(run haproxy "$HAP" direct "$HP" create)")
results+=("$(run "idemproxy read-only" "$IDEM" forward "$IP" describe)")
results+=("$(run "idemproxy token+re-sign" "$IDEM" forward "$IP" create)")
results+=("$(run "idemproxy CONNECT+MITM" "$IDEM" connect "$IP" create)")

# Added latency at half of idemproxy's max load (open loop), against direct at the same rate.
max=$(printf '%s\n' "${results[4]}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["rps"])')
half=$(python3 -c "print(int($max / 2))")
direct_half=$($GEN --target "127.0.0.1:$UP" --mode direct --connections "$CONNECTIONS" --duration "$DURATION" --rate "$half")
idem_half=$($GEN --target "127.0.0.1:$IP" --mode forward --connections "$CONNECTIONS" --duration "$DURATION" --rate "$half")
hap_half=$($GEN --target "127.0.0.1:$HP" --mode direct --connections "$CONNECTIONS" --duration "$DURATION" --rate "$half")

# Memory: a fresh idemproxy idle, then holding 1,000 keep-alive connections.
IP2=$(free_port); start_idemproxy "$IP2"; IDEM2=${pids[-1]}; sleep 0.5
idle=$(rss_kib "$IDEM2" VmRSS)
$GEN --target "127.0.0.1:$IP2" --mode forward --connections 1000 --duration 30 --hold 4 >/dev/null &
gen=$!; sleep 3
held=$(rss_kib "$IDEM2" VmRSS); wait $gen

python3 - "$half" "$direct_half" "$idem_half" "$idle" "$held" "$hap_half" "${results[@]}" <<'PY'
import json, sys
half, dh, ih, idle, held = int(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
hh = json.loads(sys.argv[6])
rows = [json.loads(r) for r in sys.argv[7:]]
by = {r["name"]: r for r in rows}
print("| configuration | req/s | p50 µs | p99 µs | proxy CPU µs/req | proxy peak RSS MiB | 200s | errors |")
print("|---|---|---|---|---|---|---|---|")
for r in rows:
    print(f'| {r["name"]} | {r["rps"]:.0f} | {r["p50_us"]} | {r["p99_us"]} | {r["cpu_us_per_req"] if r["cpu_us_per_req"] is not None else "-"} | {r["peak_rss_mib"] if r["peak_rss_mib"] is not None else "-"} | {r["ok"]} | {r["errors"]} |')
tok = by["idemproxy token+re-sign"]["rps"]
print()
print(f'idemproxy token+re-sign / tinyproxy = {tok / by["tinyproxy"]["rps"]:.2f} (target >= 2)')
print(f'idemproxy token+re-sign / haproxy   = {tok / by["haproxy"]["rps"]:.2f} (target >= 0.8)')
print(f'at {half} req/s (half of idemproxy max): direct p50/p99 {dh["p50_us"]}/{dh["p99_us"]} µs, '
      f'haproxy {hh["p50_us"]}/{hh["p99_us"]} µs, idemproxy token+re-sign {ih["p50_us"]}/{ih["p99_us"]} µs; '
      f'idemproxy adds {ih["p99_us"] - dh["p99_us"]} µs at p99 (target <= 1000), haproxy adds {hh["p99_us"] - dh["p99_us"]} µs')
print(f'idemproxy RSS idle {idle / 1024:.1f} MiB (target <= 15), with 1,000 keep-alive connections {held / 1024:.1f} MiB (target <= 64)')
PY
