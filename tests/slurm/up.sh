#!/usr/bin/env bash
# Stand up a one-node SLURM cluster on this machine (for tests/test_slurm.py, or by hand):
#
#   sudo tests/slurm/up.sh      # install if missing, configure, start, wait until the node is idle
#   sudo tests/slurm/down.sh    # stop everything this script started
#
# Debian/Ubuntu as root; no systemd and no cgroups needed. Accounting is real, as on a
# production cluster: slurmdbd on a private MariaDB (its own data directory and port), so
# the executor plugin's default status command (sacct) and its account check run as they
# would there. The cluster "bptt" has one node (this host, all its CPUs), one default
# partition "debug" and one account "bptt" (the default account of root and of $SUDO_USER).
# Running it again while the cluster is up only checks that the node and accounting answer.
# Everything but /etc/slurm/slurm.conf and /etc/slurm/slurmdbd.conf (where the SLURM
# commands look for them) lives under $BPTT_SLURM_STATE (default /var/tmp/bptt-slurm).
set -euo pipefail

STATE=${BPTT_SLURM_STATE:-/var/tmp/bptt-slurm}
DB_PORT=${BPTT_SLURM_DB_PORT:-33061}
CLUSTER=bptt
ACCOUNT=bptt
PARTITION=debug
MARK="# written by bptt tests/slurm/up.sh"
HERE=$(cd "$(dirname "$0")" && pwd)

say() { echo "slurm-up: $*" >&2; }

dump_logs() {
    for f in "$STATE"/log/*.log; do
        [ -e "$f" ] || continue
        echo "----- $f (last 40 lines) -----" >&2
        tail -n 40 "$f" >&2
    done
}

fail() {
    say "FAILED: $*"
    dump_logs
    exit 1
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local limit=$1 what=$2
    shift 2
    for _ in $(seq "$limit"); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 1
    done
    fail "$what not ready after ${limit}s"
}

node_idle() { sinfo -h -N -o '%t' 2>/dev/null | grep -qx 'idle'; }
node_up() { sinfo -h -N -o '%t' 2>/dev/null | grep -qxE 'idle|mix|alloc'; }

[ "$(id -u)" = 0 ] || { say "must run as root (it installs packages and starts daemons)"; exit 1; }

if [ -f "$STATE/up" ] && node_up && sacctmgr -n list cluster "$CLUSTER" format=cluster 2>/dev/null | grep -q "$CLUSTER"; then
    say "already up (node $(sinfo -h -N -o '%t'), accounting answers)"
    exit 0
fi
# A half-started cluster from an earlier attempt: clear it and start over.
"$HERE/down.sh" >/dev/null 2>&1 || true

# --- install -------------------------------------------------------------------------------
missing=()
for pair in slurmctld:slurm-wlm slurmd:slurm-wlm slurmdbd:slurmdbd munged:munge mariadbd:mariadb-server; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${pair%%:*}" ] || missing+=("${pair#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null || fail "apt-get update"
    apt-get install -y -q $(printf '%s\n' "${missing[@]}" | sort -u) >/dev/null \
        || fail "apt-get install ${missing[*]}"
fi
export PATH=/usr/sbin:/usr/bin:$PATH

for f in /etc/slurm/slurm.conf /etc/slurm/slurmdbd.conf; do
    if [ -e "$f" ] && ! grep -qF "$MARK" "$f"; then
        say "$f exists and was not written by this script: refusing to replace a real cluster's config"
        exit 1
    fi
done

mkdir -p "$STATE"/{log,run,ctld,slurmd}
chmod 755 "$STATE"
HOST=$(hostname -s)
CPUS=$(nproc)
MEM_MB=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 512 ))

# --- munge ---------------------------------------------------------------------------------
[ -s /etc/munge/munge.key ] || { /usr/sbin/mungekey --create 2>/dev/null || /usr/sbin/create-munge-key -f; }
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
mkdir -p /run/munge && chown munge:munge /run/munge && chmod 755 /run/munge
mkdir -p /var/log/munge /var/lib/munge && chown munge:munge /var/log/munge /var/lib/munge
if ! pgrep -u munge -x munged >/dev/null; then
    touch "$STATE/log/munged.log" && chown munge:munge "$STATE/log/munged.log"
    runuser -u munge -- /usr/sbin/munged --force --pid-file=/run/munge/munged.pid \
        --log-file="$STATE/log/munged.log" || fail "munged did not start"
    touch "$STATE/run/munged.ours"
fi
wait_for 10 munge sh -c 'munge -n | unmunge'

# --- MariaDB for slurmdbd (private data directory and port) --------------------------------
if [ ! -d "$STATE/mysql/mysql" ]; then
    mariadb-install-db --no-defaults --datadir="$STATE/mysql" --user=root \
        --auth-root-authentication-method=socket >"$STATE/log/mariadb-install.log" 2>&1 \
        || fail "mariadb-install-db"
fi
setsid mariadbd --no-defaults --datadir="$STATE/mysql" --user=root --port="$DB_PORT" \
    --bind-address=127.0.0.1 --skip-name-resolve --socket="$STATE/run/mysqld.sock" \
    --pid-file="$STATE/run/mariadbd.pid" --log-error="$STATE/log/mariadbd.log" \
    --innodb-buffer-pool-size=64M </dev/null >/dev/null 2>&1 &
wait_for 30 MariaDB mariadb --no-defaults --socket="$STATE/run/mysqld.sock" -uroot -e 'select 1'
mariadb --no-defaults --socket="$STATE/run/mysqld.sock" -uroot -e "
    CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'bptt-test-only';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';" || fail "MariaDB user for slurmdbd"

# --- config --------------------------------------------------------------------------------
mkdir -p /etc/slurm
cat >/etc/slurm/slurmdbd.conf <<EOF
$MARK
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
PidFile=$STATE/run/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=bptt-test-only
StorageLoc=slurm_acct_db
EOF
chmod 600 /etc/slurm/slurmdbd.conf

# Without systemd or cgroups: processes tracked via /proc, no task binding. CR_CPU: one job
# per CPU, memory is requested but not a consumable (the node's real memory is the limit).
cat >/etc/slurm/slurm.conf <<EOF
$MARK
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageEnforce=associations
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MinJobAge=300
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF

# --- slurmdbd, the account, slurmctld, slurmd ----------------------------------------------
slurmdbd || fail "slurmdbd did not start"
wait_for 30 slurmdbd sacctmgr -n list cluster
sacctmgr -i -Q add cluster "$CLUSTER" >/dev/null 2>&1 || true
sacctmgr -i -Q add account "$ACCOUNT" Cluster="$CLUSTER" Description=bptt Organization=bptt >/dev/null 2>&1 || true
for user in root ${SUDO_USER:-}; do
    sacctmgr -i -Q add user "$user" Account="$ACCOUNT" DefaultAccount="$ACCOUNT" >/dev/null 2>&1 || true
done
sacctmgr -n -P list assoc user=root format=account | grep -qx "$ACCOUNT" \
    || fail "account $ACCOUNT not registered for root"

slurmctld -c || fail "slurmctld did not start"
wait_for 30 slurmctld scontrol ping
slurmd || fail "slurmd did not start"
wait_for 60 "node $HOST (idle)" node_idle
touch "$STATE/up"
say "up: cluster $CLUSTER, node $HOST ($CPUS CPUs, ${MEM_MB} MB), partition $PARTITION, account $ACCOUNT"
