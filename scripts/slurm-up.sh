#!/usr/bin/env bash
# Starts a one-node Slurm cluster on this machine for the Slurm executor's tests
# (scripts/test.sh runs it): installs Debian's `slurm-wlm` and `munge` if they are
# missing, writes a minimal slurm.conf (no accounting; this node in a `debug` partition,
# and in an `urgent` one whose jobs pre-empt debug's, cancelling them), starts munged,
# slurmctld and slurmd (reached at 127.0.0.1, so the host name need not resolve), and
# waits until the node is idle. Idempotent: a cluster already
# up with this configuration is left as it is. Needs root (or sudo) and apt.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=""
for tool in sbatch squeue scancel sinfo slurmctld slurmd munged munge pgrep; do
  command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
if [ -n "$missing" ]; then
  echo "slurm-up: installing slurm-wlm, munge and procps (missing:$missing)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq slurm-wlm munge procps >/dev/null
fi

host="$(uname -n | cut -d. -f1)"
cpus="$(nproc)"
mem="$(( $(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo) - 1024 ))"
conf="ClusterName=soma-flow-test
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1,bf_interval=1
PreemptType=preempt/partition_prio
PreemptMode=CANCEL
StateSaveLocation=/var/spool/soma-flow-slurmctld
SlurmdSpoolDir=/var/spool/soma-flow-slurmd
ReturnToService=2
MpiDefault=none
MinJobAge=30
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP PriorityTier=1
PartitionName=urgent Nodes=$host MaxTime=INFINITE State=UP PriorityTier=2"

up() { sinfo -h -o "%T" 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; }

if [ "$(cat /etc/slurm/slurm.conf 2>/dev/null)" = "$conf" ] && up; then
  exit 0
fi

if [ ! -s /etc/munge/munge.key ]; then
  $SUDO mkdir -p /etc/munge
  $SUDO dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
$SUDO chown munge:munge /etc/munge/munge.key
$SUDO chmod 0400 /etc/munge/munge.key
$SUDO mkdir -p /run/munge /var/log/munge /var/lib/munge
$SUDO chown -R munge:munge /run/munge /var/log/munge /var/lib/munge
# munged answers (a daemon still exiting does not count).
if ! munge -n >/dev/null 2>&1; then
  $SUDO runuser -u munge -- /usr/sbin/munged --force
  for _ in $(seq 1 50); do munge -n >/dev/null 2>&1 && break; sleep 0.1; done
fi

$SUDO mkdir -p /etc/slurm /var/spool/soma-flow-slurmctld /var/spool/soma-flow-slurmd /var/log/slurm
printf '%s\n' "$conf" | $SUDO tee /etc/slurm/slurm.conf >/dev/null
# Daemons running with another configuration start again with this one.
for daemon in slurmctld slurmd; do
  if pgrep -x "$daemon" >/dev/null; then
    $SUDO pkill -x "$daemon" || true
    for _ in $(seq 1 50); do pgrep -x "$daemon" >/dev/null || break; sleep 0.1; done
  fi
done
$SUDO slurmctld
$SUDO slurmd

for _ in $(seq 1 60); do
  if up; then
    echo "slurm-up: node $host is up ($cpus CPUs, $mem MB)"
    exit 0
  fi
  sleep 1
done
echo "slurm-up: the node did not come up; see /var/log/slurm/" >&2
sinfo >&2 || true
exit 1
