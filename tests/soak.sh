#!/bin/bash
# The long soak of a live `nodegate run`, by hand before a release (CI runs the bounded
# versions: tests/health_soak_netns.rs, tests/flood_netns.rs, tests/run_errors_netns.rs):
# minutes idle past health.timeout_secs, a broken manifest and its fix, an hping3 SYN flood
# with a paced legitimate client, a second instance, kill -9 and a restart. A node namespace
# with two veths nodegate owns (AF_XDP): `wire` to a client namespace and `pods` to a pod
# namespace with an HTTP server behind a NodePort. One line per check; exits non-zero at the
# first failure. Root, iproute2, ethtool, curl, python3, hping3; namespaces sk* are removed at
# the end (KEEP=1 keeps them after a failure, for a look).
#
#   cargo build --release && IDLE=150 FLOOD=60 bash tests/soak.sh
set -u
BIN=${BIN:-$(cd "$(dirname "$0")/.." && pwd)/target/release/nodegate}
IDLE=${IDLE:-150}      # seconds idle
FLOOD=${FLOOD:-60}     # seconds of flood
P=sk
N=${P}node C=${P}cl D=${P}pod
W=/tmp/soak
fail() { echo "FAIL: $*"; [ -n "${KEEP:-}" ] || cleanup; exit 1; }
cleanup() {
  [ -n "${PID:-}" ] && kill "$PID" 2>/dev/null; sleep 1
  pkill -f "hping3.*192.0.2.1" 2>/dev/null
  ip netns pids $D 2>/dev/null | xargs -r kill 2>/dev/null
  for ns in $N $C $D; do ip netns del $ns 2>/dev/null; done
}
trap cleanup EXIT
[ -n "${KEEP:-}" ] && trap - EXIT
cleanup
rm -rf $W; mkdir -p $W/manifests
ip netns add $N; ip netns add $C; ip netns add $D
ip -n $N link add wire type veth peer name eth0 netns $C
ip -n $N link add pods type veth peer name eth0 netns $D
for ns in $N $C $D; do ip -n $ns link set lo up; done
ip -n $N link set wire up; ip -n $N link set pods up
ip -n $C link set eth0 up; ip -n $D link set eth0 up
ip -n $C addr add 192.0.2.2/24 dev eth0; ip -n $C route add default via 192.0.2.1
ip -n $D addr add 10.244.1.5/24 dev eth0; ip -n $D route add default via 10.244.1.1
ip netns exec $C ethtool -K eth0 tx off >/dev/null; ip netns exec $D ethtool -K eth0 tx off >/dev/null
mkdir -p $W/www; echo hello-from-pod > $W/www/index.html
ip netns exec $D python3 -m http.server 8080 --bind 10.244.1.5 --directory $W/www >/dev/null 2>&1 &
for i in $(seq 50); do ip netns exec $D ss -ltn | grep -q 10.244.1.5:8080 && break; sleep 0.2; done
cat > $W/nodegate.yaml <<EOF
node: {name: node-a, addresses: ["192.0.2.1"]}
workers: 2
ports:
  - {name: wire, driver: af_xdp, interface: wire, mac: "02:00:00:00:00:01", addresses: ["192.0.2.1/24"]}
  - {name: pods, driver: af_xdp, interface: pods, mac: "02:00:00:00:01:01", addresses: ["10.244.1.1/24"]}
kubernetes: {manifests: manifests, min_sync_ms: 100}
health: {timeout_secs: 2}
EOF
SVC='apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  type: NodePort
  clusterIP: 10.96.0.50
  ports: [{port: 80, protocol: TCP, targetPort: 8080, nodePort: 30050}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: shop, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: "", port: 8080, protocol: TCP}]
endpoints:
  - {addresses: ["10.244.1.5"], conditions: {ready: true}, nodeName: node-a}'
echo "$SVC" > $W/manifests/web.yaml
start() { (cd $W && exec ip netns exec $N "$BIN" run --config nodegate.yaml >>$W/log 2>&1) & PID=$!; sleep 3; }
health() { ip netns exec $N curl -s --max-time 3 -o /dev/null -w '%{http_code}' http://127.0.0.1:10256/healthz; }
hello() { ip netns exec $C curl -s --max-time 3 http://192.0.2.1:30050/; }
start
[ "$(hello)" = hello-from-pod ] || fail "NodePort does not answer at start: $(tail -5 $W/log)"
echo "ok: NodePort answers at start"
# idle
bad=0; end=$((SECONDS+IDLE)); n=0
while [ $SECONDS -lt $end ]; do
  h=$(health); n=$((n+1)); [ "$h" = 200 ] || { bad=$((bad+1)); echo "  healthz $h at +$((SECONDS))s"; }
  sleep 5
done
[ $bad = 0 ] || fail "healthz not 200 in $bad of $n idle probes"
[ "$(hello)" = hello-from-pod ] || fail "NodePort after idle"
echo "ok: $n healthz probes over ${IDLE}s idle all 200; NodePort answers after"
# broken manifest, then fixed
echo "${SVC/port: 80,/port: eighty,}" > $W/manifests/web.yaml; sleep 2
grep -q "last good manifests stay" $W/log || fail "broken manifest not reported"
[ "$(hello)" = hello-from-pod ] || fail "NodePort with a broken manifest"
[ "$(health)" = 200 ] || fail "healthz with a broken manifest"
echo "$SVC" > $W/manifests/web.yaml; sleep 1
echo "ok: broken manifest reported ($(grep -m1 'eighty\|web.yaml' $W/log | sed 's/\x1b\[[0-9;]*m//g' | cut -c1-160)), forwarding and health kept"
# flood
ip netns exec $C hping3 -S -p 30050 --rand-source -i u20 -q 192.0.2.1 >/dev/null 2>&1 &
HP=$!
ok=0; tot=0; hbad=0; end=$((SECONDS+FLOOD))
while [ $SECONDS -lt $end ]; do
  tot=$((tot+1)); [ "$(hello)" = hello-from-pod ] && ok=$((ok+1))
  [ "$(health)" = 200 ] || hbad=$((hbad+1))
  sleep 0.5
done
kill $HP; wait $HP 2>/dev/null
echo "flood: $ok of $tot legitimate requests answered, healthz non-200 $hbad times"
[ $((ok*100)) -ge $((tot*95)) ] || fail "fewer than 95 % answered under flood"
[ $hbad = 0 ] || fail "healthz failed under flood"
sleep 2; [ "$(hello)" = hello-from-pod ] || fail "NodePort after flood"
kill -0 $PID || fail "nodegate died under flood: $(tail -5 $W/log)"
grep -qi panick $W/log && fail "a panic in the log"
echo "ok: after the flood"
# second instance
out=$(cd $W && ip netns exec $N timeout 10 "$BIN" run --config nodegate.yaml 2>&1); rc=$?
[ $rc != 0 ] && [ $rc != 124 ] || fail "a second instance was not refused (rc $rc): $out"
echo "ok: second instance refused (rc $rc): $(echo "$out" | grep -m1 error | cut -c1-200)"
[ "$(hello)" = hello-from-pod ] || fail "NodePort after the second instance"
# kill -9 and restart
kill -9 $PID; wait $PID 2>/dev/null; sleep 1
start
[ "$(hello)" = hello-from-pod ] || fail "NodePort after kill -9 and restart: $(tail -5 $W/log)"
[ "$(health)" = 200 ] || fail "healthz after restart"
echo "ok: restarted after kill -9 ($(grep -m1 'taking over' $W/log | sed 's/\x1b\[[0-9;]*m//g' | cut -c1-200))"
kill $PID; wait $PID; rc=$?
echo "ok: stopped with rc $rc"
echo PASS
