#!/usr/bin/env bash
# A real one-node SLURM cluster on localhost for tests/test_study_slurm.py: Debian's slurmctld,
# slurmd and munge, started as root (CI runs as root). Idempotent: does nothing when the node is
# already up. Never fails CI: when SLURM cannot start, it says why on stderr and in
# $ECG_TRANSFER_SLURM_STATUS (default /tmp/ecg-transfer-slurm-up.txt), and the SLURM tests skip
# with that reason.
set -u
STATUS_FILE="${ECG_TRANSFER_SLURM_STATUS:-/tmp/ecg-transfer-slurm-up.txt}"
CONF=/etc/slurm/slurm.conf
LOGS=/var/log/slurm

fail() {
  echo "slurm_up: SLURM not started: $*" >&2
  echo "$*" > "$STATUS_FILE"
  exit 0
}

node_idle() { sinfo -h -N -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)$'; }

if command -v sinfo >/dev/null 2>&1 && node_idle; then
  echo "up (already running)" > "$STATUS_FILE"
  exit 0
fi
[ "$(id -u)" = 0 ] || fail "needs root to install and start slurmctld/slurmd/munged (running as $(id -un))"

if ! command -v slurmctld >/dev/null 2>&1 || ! command -v slurmd >/dev/null 2>&1 \
   || ! command -v munged >/dev/null 2>&1 || ! command -v sbatch >/dev/null 2>&1; then
  command -v apt-get >/dev/null 2>&1 || fail "no apt-get to install slurmctld, slurmd, munge and slurm-client"
  pkgs="slurmctld slurmd munge slurm-client"
  { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $pkgs \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $pkgs; }
  } > /tmp/ecg-transfer-slurm-apt.log 2>&1 \
    || fail "apt-get install $pkgs failed: $(tail -n 3 /tmp/ecg-transfer-slurm-apt.log | tr '\n' ' ')"
fi

# munge: a key readable by the munge user only, and its daemon
mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none || fail "cannot write /etc/munge/munge.key"
fi
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null
chmod 0700 /etc/munge && chmod 0400 /etc/munge/munge.key
if ! munge -n >/dev/null 2>&1; then
  runuser -u munge -- munged 2>/tmp/ecg-transfer-munged.log || munged --force 2>>/tmp/ecg-transfer-munged.log \
    || fail "munged did not start: $(tr '\n' ' ' < /tmp/ecg-transfer-munged.log)"
fi
munge -n >/dev/null 2>&1 || fail "munge does not answer (munge -n failed)"

# one node, this machine's CPUs, jobs run as the submitting user (root here)
cpus=$(nproc)
mem_mb=$(awk '/MemTotal/ {print int($2 / 1024 * 0.8)}' /proc/meminfo)
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd "$LOGS"
cat > "$CONF" <<EOF
# written by ecg-transfer's .ci/slurm_up.sh: a one-node test cluster on localhost
ClusterName=ecgtransferci
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=2
JobCompType=jobcomp/filetxt
JobCompLoc=$LOGS/jobcomp.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
MinJobAge=3600
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF

pgrep -x slurmctld >/dev/null || slurmctld 2>>"$LOGS/slurmctld.start" || fail "slurmctld did not start: $(tail -n 3 $LOGS/slurmctld.log 2>/dev/null | tr '\n' ' ')"
pgrep -x slurmd >/dev/null || slurmd -N localhost 2>>"$LOGS/slurmd.start" || fail "slurmd did not start: $(tail -n 3 $LOGS/slurmd.log 2>/dev/null | tr '\n' ' ')"

for _ in $(seq 1 60); do
  if node_idle; then
    echo "up" > "$STATUS_FILE"
    echo "slurm_up: one-node SLURM cluster up ($cpus CPUs, partition debug)" >&2
    exit 0
  fi
  state=$(sinfo -h -N -o '%T' 2>/dev/null)
  case "$state" in down*|drain*|unknown*) scontrol update nodename=localhost state=resume >/dev/null 2>&1 ;; esac
  sleep 1
done
fail "the node did not become idle within 60 s (sinfo: $(sinfo -h -N -o '%T %E' 2>&1 | tr '\n' ' '); slurmd log: $(tail -n 3 $LOGS/slurmd.log 2>/dev/null | tr '\n' ' '))"
