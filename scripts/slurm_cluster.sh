#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for testing the submitit_slurm launcher: munged, slurmctld and slurmd on
# localhost, every file (munge key and socket, slurm.conf, state, spool, logs, pid files) under one directory.
#
#   scripts/slurm_cluster.sh install        apt-get install slurm-wlm munge (Debian/Ubuntu, as root); no-op if present
#   scripts/slurm_cluster.sh up [DIR]       start the cluster (idempotent); prints `export SLURM_CONF=...`
#   scripts/slurm_cluster.sh down [DIR]     stop every daemon it started and delete DIR (idempotent)
#   scripts/slurm_cluster.sh status [DIR]   exit 0 when the controller answers and the node is up
#   scripts/slurm_cluster.sh env [DIR]      print the `export SLURM_CONF=...` line for client commands
#
# DIR defaults to $PASSK_SLURM_DIR or /tmp/passk-slurm. Ports: $PASSK_SLURM_PORT (slurmctld, default 6817) and the
# next one (slurmd). It configures what the test needs and nothing more: proctrack/linuxproc and task/none (no
# cgroups in containers), select/cons_tres, no accounting database, no GPUs. It runs the daemons as the current user,
# so it is meant for root in a throwaway container or CI machine, not for a shared host.
set -euo pipefail

CMD="${1:-}"
DIR="$(realpath -m "${2:-${PASSK_SLURM_DIR:-/tmp/passk-slurm}}")"
PORT="${PASSK_SLURM_PORT:-6817}"
NODE="localhost"
CONF="$DIR/slurm.conf"
SOCKET="$DIR/munge/munge.socket"

log() { echo "slurm_cluster: $*" >&2; }

alive() {  # alive PIDFILE: the process named in PIDFILE runs
    [[ -s "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

ready() {
    alive "$DIR/slurmctld.pid" && alive "$DIR/slurmd.pid" || return 1
    SLURM_CONF="$CONF" scontrol ping 2>/dev/null | grep -q "is UP" || return 1
    SLURM_CONF="$CONF" sinfo -h -N -o "%t" 2>/dev/null | grep -Eq "^(idle|mix|alloc)"
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local deadline=$((SECONDS + $1)) what="$2"
    shift 2
    until "$@"; do
        if ((SECONDS >= deadline)); then
            log "timed out waiting for $what; logs in $DIR/log"
            tail -n 20 "$DIR"/log/*.log >&2 2>/dev/null || true
            return 1
        fi
        sleep 0.2
    done
}

install() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null; then
        log "slurm-wlm and munge are installed"
        return 0
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq slurm-wlm munge >/dev/null
    log "installed $(slurmctld -V)"
}

write_conf() {
    local cpus mem_mb
    cpus="$(nproc)"
    mem_mb="$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)"
    cat >"$CONF" <<EOF
ClusterName=passk
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=$(id -un)
AuthType=auth/munge
AuthInfo=socket=$SOCKET
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=300
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
}

up() {
    if ready; then
        log "already up in $DIR"
        echo "export SLURM_CONF=$CONF"
        return 0
    fi
    command -v slurmctld >/dev/null || { log "slurmctld is not installed: run '$0 install'"; return 1; }
    down_daemons  # a half-started cluster from an earlier attempt
    mkdir -p "$DIR"/{munge,state,spool,log}
    chmod 700 "$DIR" "$DIR/munge"
    if [[ ! -s "$DIR/munge/munge.key" ]]; then
        dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1 count=1024 status=none
        chmod 400 "$DIR/munge/munge.key"
    fi
    munged --force --key-file="$DIR/munge/munge.key" --socket="$SOCKET" --pid-file="$DIR/munge/munged.pid" \
        --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munged.seed"
    wait_for 60 munged test -S "$SOCKET"
    write_conf
    slurmctld -c -f "$CONF"
    slurmd -f "$CONF" -N "$NODE"
    wait_for 120 "slurmctld and slurmd" ready
    log "up in $DIR ($(nproc) CPUs, partition debug)"
    echo "export SLURM_CONF=$CONF"
}

stop() {  # stop PIDFILE: TERM, then KILL after 5 s
    local pid
    [[ -s "$1" ]] || return 0
    pid="$(cat "$1")"
    if kill -0 "$pid" 2>/dev/null; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$1"
}

down_daemons() {
    if [[ -f "$CONF" ]] && alive "$DIR/slurmctld.pid"; then
        SLURM_CONF="$CONF" scancel --quiet --user="$(id -un)" 2>/dev/null || true  # no job outlives the cluster
    fi
    stop "$DIR/slurmd.pid"
    stop "$DIR/slurmctld.pid"
    stop "$DIR/munge/munged.pid"
}

down() {
    down_daemons
    case "$DIR" in /|/tmp|/root|"$HOME") log "refusing to delete $DIR"; return 1 ;; esac
    rm -rf "$DIR"
    log "down; removed $DIR"
}

case "$CMD" in
    install) install ;;
    up) up ;;
    down) down ;;
    status) ready && log "up in $DIR" || { log "not running in $DIR"; exit 1; } ;;
    env) echo "export SLURM_CONF=$CONF" ;;
    *) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
