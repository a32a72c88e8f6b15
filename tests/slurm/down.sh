#!/usr/bin/env bash
# Stop the one-node cluster of tests/slurm/up.sh: slurmd, slurmctld, slurmdbd, its MariaDB
# and munged, each by the pid it recorded; remove the config files up.sh wrote and the
# cluster's state ($BPTT_SLURM_STATE, default /var/tmp/bptt-slurm). Safe to run twice.
set -uo pipefail

STATE=${BPTT_SLURM_STATE:-/var/tmp/bptt-slurm}
MARK="# written by bptt tests/slurm/up.sh"

stop() {  # stop NAME PIDFILE
    local name=$1 pidfile=$2 pid
    [ -s "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    if kill "$pid" 2>/dev/null; then
        for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
        if kill -0 "$pid" 2>/dev/null; then
            echo "slurm-down: $name ($pid) ignored TERM, killing" >&2
            kill -9 "$pid" 2>/dev/null
        fi
    fi
    rm -f "$pidfile"
}

# Jobs first (a test that timed out leaves some running): slurmstepd outlives slurmd.
if grep -qsF "$MARK" /etc/slurm/slurm.conf && scontrol ping >/dev/null 2>&1; then
    jobs=$(squeue -h -o %i 2>/dev/null)
    if [ -n "$jobs" ]; then
        echo "slurm-down: cancelling jobs $(echo $jobs)" >&2
        scancel $jobs
        for _ in $(seq 30); do [ -z "$(squeue -h -t R,CG -o %i 2>/dev/null)" ] && break; sleep 1; done
    fi
fi
stop slurmd "$STATE/run/slurmd.pid"
stop slurmctld "$STATE/run/slurmctld.pid"
stop slurmdbd "$STATE/run/slurmdbd.pid"
stop mariadbd "$STATE/run/mariadbd.pid"
# munged may serve others: stop it only if up.sh started it.
[ -e "$STATE/run/munged.ours" ] && stop munged /run/munge/munged.pid
for f in /etc/slurm/slurm.conf /etc/slurm/slurmdbd.conf; do
    grep -qsF "$MARK" "$f" && rm -f "$f"
done
rm -rf "$STATE"
echo "slurm-down: stopped" >&2
