#!/bin/bash
# A single-node Slurm cluster on loopback for the study runner's spec (tests/lua/study_slurm_spec.lua),
# started by hand without systemd or cgroups, as in ../shared/reference/distributed.md (section 1).
#
#   tests/slurm/cluster.sh start STATE   # writes STATE/slurm.conf, starts munged (unless one runs),
#                                        # slurmctld and slurmd; returns when the node is idle
#   tests/slurm/cluster.sh stop STATE    # stops what start started, by the PIDs in STATE
#
# Clients then need SLURM_CONF=STATE/slurm.conf. Needs root (SlurmUser=root; munged runs as user
# munge). The ports are derived from this shell's PID so that two clusters do not collide. Every
# daemon forks and writes its pid file; stop sends SIGTERM to each recorded PID, waits up to 10 s,
# then sends SIGKILL.
set -euo pipefail
cmd="${1:-}"
STATE="${2:-}"
[ -n "$cmd" ] && [ -n "$STATE" ] || { echo "usage: $0 start|stop STATE" >&2; exit 2; }

stop_pid() {   # SIGTERM, wait, SIGKILL: by PID only
    local p="$1"
    kill "$p" 2>/dev/null || return 0
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
}

if [ "$cmd" = stop ]; then
    for pf in "$STATE/slurmd.pid" "$STATE/slurmctld.pid" "$STATE/munged.pid.ours"; do
        [ -s "$pf" ] && stop_pid "$(cat "$pf")"
    done
    exit 0
fi
[ "$cmd" = start ] || { echo "usage: $0 start|stop STATE" >&2; exit 2; }

NODE=$(hostname -s)
PORT=$(( 17000 + ($$ % 1000) * 2 ))
mkdir -p "$STATE/ctld" "$STATE/spool" "$STATE/log"
export SLURM_CONF="$STATE/slurm.conf"
cat > "$SLURM_CONF" <<CONF
ClusterName=lstest
SlurmctldHost=$NODE(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$STATE/log/jobcomp.txt
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
MailProg=/bin/true
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$(nproc) State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
CONF

# munge: reuse a running munged (and leave it running); else start one and record its PID
if ! munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
    [ -s /etc/munge/munge.key ] || runuser -u munge -- mungekey --create
    install -d -o munge -g munge -m 0755 /run/munge
    runuser -u munge -- /usr/sbin/munged
    for _ in $(seq 50); do munge -n </dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
    cp /run/munge/munged.pid "$STATE/munged.pid.ours"
fi

/usr/sbin/slurmctld -f "$SLURM_CONF"
/usr/sbin/slurmd -f "$SLURM_CONF"
for _ in $(seq 300); do
    [ "$(sinfo -h -N -o %t 2>/dev/null)" = idle ] && exit 0
    sleep 0.1
done
echo "cluster.sh: the node did not become idle in 30 s" >&2
cat "$STATE"/log/*.log >&2 || true
exit 1
