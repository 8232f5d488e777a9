#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for the workflow's cluster path and its tests:
#   scripts/slurm_local.sh start|stop|status
# start: installs Debian's slurm-wlm, slurmdbd, munge and mariadb-server if missing (root, apt),
#        writes a configuration under $RICEPO_SLURM_DIR (default /tmp/ricepo-slurm): one node with
#        this machine's CPUs and memory and 2 GPUs declared over stand-in device files (jobs that
#        ask for GPUs are scheduled and accounted on a machine without any), partitions
#        `cpu` (default) and `gpu`, accounting through slurmdbd into MariaDB, an account `ricepo`;
#        starts munged, mariadbd, slurmdbd, slurmctld and slurmd, all on 127.0.0.1 only, and waits
#        until `sinfo` shows the node idle. Every start is a fresh cluster: the state, spool, logs
#        and accounting database of an earlier one are removed (a node left DOWN or jobs left
#        queued by a killed run would otherwise come back, and job ids would repeat in sacct). The configuration is linked from /etc/slurm (where
#        Slurm's commands look, inside jobs too); a configuration there that is not this script's
#        stops it.
# stop:   stops the daemons it started (by the process ids it recorded), in reverse order.
# status: the daemons' process ids and `sinfo`.
# A job over its memory (`mem_mb`) is killed (JobAcctGatherParams=OverMemoryKill), as on a cluster;
# a job being stopped gets SIGTERM 30 s before SIGKILL (KillWait, Slurm's default); sacct shows the
# rule in each job's Comment (Snakemake writes it there).
set -euo pipefail
dir=${RICEPO_SLURM_DIR:-/tmp/ricepo-slurm}
host=$(hostname -s)
export SLURM_CONF=$dir/slurm.conf   # the daemons' own reads
db_socket=$dir/db/mysqld.sock   # in the folder MariaDB owns
db_password=ricepo-local   # a database reachable from this machine only

log() { echo "slurm_local: $*"; }
die() { echo "slurm_local: $*" >&2; exit 1; }

install_packages() {
  local missing=()
  for cmd in slurmctld:slurm-wlm slurmd:slurm-wlm slurmdbd:slurmdbd munged:munge mariadbd:mariadb-server; do
    command -v "${cmd%%:*}" >/dev/null || missing+=("${cmd#*:}")
  done
  [ ${#missing[@]} -eq 0 ] && return
  [ "$(id -u)" -eq 0 ] || die "needs root to install ${missing[*]} (apt-get)"
  log "installing ${missing[*]}"
  # the packages' own services must not start: this script runs its daemons itself
  local own_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && own_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  [ -n "$own_policy" ] && rm -f /usr/sbin/policy-rc.d
  return 0
}

write_config() {
  local cpus mem
  cpus=$(nproc)
  mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))   # MB, less 1 GB for the daemons
  mkdir -p "$dir"/{ctld,d,log,db}
  cat > "$dir/slurm.conf" <<EOF
ClusterName=ricepo
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
StateSaveLocation=$dir/ctld
SlurmdSpoolDir=$dir/d
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=2
JobAcctGatherParams=OverMemoryKill
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStorageTRES=gres/gpu
KillWait=30
AccountingStoreFlags=job_comment
InactiveLimit=0
MinJobAge=300
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem Gres=gpu:2 State=UNKNOWN
PartitionName=cpu Nodes=$host Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$host MaxTime=INFINITE State=UP
EOF
  # Slurm drops a GPU without a device file: two stand-in files (nothing opens them: task/none
  # constrains no devices)
  touch "$dir/gpu0" "$dir/gpu1"
  echo "NodeName=$host Name=gpu File=$dir/gpu[0-1]" > "$dir/gres.conf"
  cat > "$dir/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=$host
DbdAddr=127.0.0.1
DbdPort=6819
SlurmUser=root
PidFile=$dir/slurmdbd.pid
LogFile=$dir/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=3306
StorageLoc=slurm_acct_db
StorageUser=slurm
StoragePass=$db_password
EOF
  chmod 600 "$dir/slurmdbd.conf"
  # Slurm's commands inside jobs (srun, under Snakemake's job step) read the default location, not
  # $SLURM_CONF: link it there, never over a configuration that is not ours
  mkdir -p /etc/slurm
  for f in slurm.conf gres.conf slurmdbd.conf; do
    if [ -e "/etc/slurm/$f" ] && [ "$(readlink "/etc/slurm/$f")" != "$dir/$f" ]; then
      die "/etc/slurm/$f exists and is not this script's: this machine has a Slurm of its own"
    fi
    ln -sfn "$dir/$f" "/etc/slurm/$f"
  done
}

wait_for() {   # wait_for SECONDS DESCRIPTION COMMAND...
  local limit=$1 what=$2; shift 2
  for _ in $(seq "$limit"); do "$@" >/dev/null 2>&1 && return; sleep 1; done
  die "$what did not come up in $limit s (logs: $dir/log, $dir/db/mariadb.log)"
}

start() {
  install_packages
  if [ -f "$dir/pids" ]; then
    while read -r _ pid; do kill -0 "$pid" 2>/dev/null && die "already started ($dir/pids); stop it first"; done < "$dir/pids"
    log "an earlier cluster's daemons are gone (a killed run); starting afresh"
  fi
  rm -rf "$dir"/{ctld,d,log,db} "$dir"/*.pid
  trap 'log "start failed: stopping what it started"; stop' EXIT   # none left running half-started
  write_config
  : > "$dir/pids"
  mkdir -p /run/munge && chown munge:munge /run/munge
  runuser -u munge -- munged --pid-file=/run/munge/ricepo.pid
  echo "munged $(cat /run/munge/ricepo.pid)" >> "$dir/pids"
  mariadb-install-db --user=mysql --datadir="$dir/db" --auth-root-authentication-method=socket >/dev/null
  chown -R mysql:mysql "$dir/db"
  mariadbd --user=mysql --datadir="$dir/db" --socket="$db_socket" --bind-address=127.0.0.1 --port=3306 \
    --pid-file="$dir/db/mariadb.pid" --log-error="$dir/db/mariadb.log" &
  echo "mariadbd $!" >> "$dir/pids"
  wait_for 60 MariaDB mariadb --socket="$db_socket" -e "select 1"
  # slurmdbd's own database user, over TCP from this machine only (127.0.0.1 resolves to localhost)
  for from in localhost 127.0.0.1; do
    mariadb --socket="$db_socket" -e "CREATE USER IF NOT EXISTS 'slurm'@'$from' IDENTIFIED BY '$db_password';
      GRANT ALL ON slurm_acct_db.* TO 'slurm'@'$from';"
  done
  slurmdbd   # reads slurmdbd.conf beside $SLURM_CONF
  wait_for 30 slurmdbd test -s "$dir/slurmdbd.pid"
  echo "slurmdbd $(cat "$dir/slurmdbd.pid")" >> "$dir/pids"
  wait_for 30 "slurmdbd's port" bash -c "exec 3<>/dev/tcp/127.0.0.1/6819"
  sacctmgr -i add cluster ricepo >/dev/null 2>&1 || true
  slurmctld -f "$SLURM_CONF"
  wait_for 30 slurmctld test -s "$dir/slurmctld.pid"
  echo "slurmctld $(cat "$dir/slurmctld.pid")" >> "$dir/pids"
  slurmd -f "$SLURM_CONF" -N "$host"
  wait_for 30 slurmd test -s "$dir/slurmd.pid"
  echo "slurmd $(cat "$dir/slurmd.pid")" >> "$dir/pids"
  sacctmgr -i add account ricepo Description=ricepo Organization=ricepo >/dev/null 2>&1 || true
  # the user who submits: the one sudo ran this for, else this one
  sacctmgr -i add user "${SUDO_USER:-$(id -un)}" Account=ricepo DefaultAccount=ricepo >/dev/null 2>&1 || true
  wait_for 60 "the node (idle in sinfo)" bash -c "sinfo -h -N -o %T | grep -qx idle"
  log "up: $(sinfo -h -o '%P %D %T %c CPUs %m MB %G' | tr '\n' ';')"
  trap - EXIT
}

stop() {
  [ -f "$dir/pids" ] || { log "not started ($dir/pids missing)"; return; }
  tac "$dir/pids" | while read -r name pid; do
    if kill "$pid" 2>/dev/null; then
      for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
      kill -9 "$pid" 2>/dev/null || true
      log "stopped $name ($pid)"
    fi
  done
  rm -f "$dir/pids"
  for f in slurm.conf gres.conf slurmdbd.conf; do
    [ "$(readlink "/etc/slurm/$f")" = "$dir/$f" ] && rm -f "/etc/slurm/$f"
  done
  return 0
}

status() {
  [ -f "$dir/pids" ] || { log "not started"; exit 1; }
  while read -r name pid; do
    kill -0 "$pid" 2>/dev/null && log "$name $pid running" || log "$name $pid NOT running"
  done < "$dir/pids"
  sinfo
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) die "usage: scripts/slurm_local.sh start|stop|status" ;;
esac
