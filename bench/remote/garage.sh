# Sourced by bench/remote/run.sh: a 3-node Garage cluster (replication factor 3) on loopback
# under $1, with bucket asl-bench and a key; sets GARAGE_S3 (node 1's endpoint), GARAGE_AK,
# GARAGE_SK and GARAGE_PIDS. garage_stop kills the nodes. Same setup as the tests'
# crates/asl/tests/garage_cluster.
GARAGE=${ASL_GARAGE:-/var/cache/asl-tools/bin/garage}
GARAGE_PIDS=()
garage_start() {
  local dir=$1 secret i rpc s3 admin id
  [ -x "$GARAGE" ] || { echo "garage.sh: no garage at $GARAGE (bash scripts/install-garage.sh)" >&2; return 1; }
  secret=$(openssl rand -hex 32)
  local ids=() rpcs=()
  for i in 1 2 3; do
    mkdir -p "$dir/n$i"
    rpc=$((39000 + i * 10 + 1)); s3=$((39000 + i * 10)); admin=$((39000 + i * 10 + 3))
    cat > "$dir/n$i/garage.toml" <<TOML
metadata_dir = "$dir/n$i/meta"
data_dir = "$dir/n$i/data"
db_engine = "sqlite"
replication_factor = 3
rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"
rpc_secret = "$secret"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:$s3"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$admin"
admin_token = "$(openssl rand -hex 24)"
TOML
    "$GARAGE" -c "$dir/n$i/garage.toml" server > "$dir/n$i/server.log" 2>&1 &
    GARAGE_PIDS+=($!)
    rpcs+=("$rpc")
  done
  g() { local n=$1; shift; "$GARAGE" -c "$dir/n$n/garage.toml" "$@"; }
  retry() { for _ in $(seq 200); do "$@" >/dev/null 2>&1 && return 0; sleep 0.3; done; "$@"; }
  for i in 1 2 3; do
    retry g "$i" node id -q
    ids+=("$(g "$i" node id -q | cut -d@ -f1)")
  done
  retry g 1 node connect "${ids[1]}@127.0.0.1:${rpcs[1]}"
  retry g 1 node connect "${ids[2]}@127.0.0.1:${rpcs[2]}"
  for i in 0 1 2; do retry g 1 layout assign -z "dc$((i + 1))" -c 1G "${ids[$i]}"; done
  retry g 1 layout apply --version 1
  retry g 1 bucket create asl-bench
  retry g 1 key create asl-bench-key
  retry g 1 bucket allow --read --write --owner asl-bench --key asl-bench-key
  local info; info=$(g 1 key info asl-bench-key --show-secret)
  GARAGE_AK=$(echo "$info" | awk 'tolower($0) ~ /key id/ {print $NF; exit}')
  GARAGE_SK=$(echo "$info" | awk 'tolower($0) ~ /secret key/ {print $NF; exit}')
  GARAGE_S3=http://127.0.0.1:39010
}
garage_stop() {
  for p in "${GARAGE_PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  GARAGE_PIDS=()
}
