#!/usr/bin/env bash
# Issue 14's GPU runs in one short lease of the `device` tool (one H200, 15 minutes in all).
#
# A lease call carries at most 64 MiB, and PTB-XL (packed as in ../shared/data) is 171 MB, so the
# data travel in three parts, .xfer1/ .xfer2/ .xfer3/ (ignored by git), one named in `carry` per call, while
# the machine stays warm (30 s between calls; /tmp is kept only while it is):
#
#   bash benchmarks/gpu_issue14.sh pack           # here, not on the device: .whl (packages the machine
#                                                 # lacks) and .xfer_stage/part0{0,1,2}
#   bash benchmarks/gpu_issue14.sh setup          # call 1 (carry .whl .xfer1): packages, part 1
#                                                 #   [MEASURE=1: the GPU's cost per step, for JOBS=auto]
#   bash benchmarks/gpu_issue14.sh part           # call 2 (carry .xfer2): part 2
#   bash benchmarks/gpu_issue14.sh main           # call 3 (carry .xfer3): part 3, PTB-XL restored with
#                                                 #   ../shared/tools' restore_ptbxl.py (every file checked
#                                                 #   against its sha256), the cache [and JOBS, if given]
#   BUDGET=S bash benchmarks/gpu_issue14.sh run   # call 4, at once: JOBS to the call's deadline
#   BUDGET=S bash benchmarks/gpu_issue14.sh run   # any later call: continues what a deadline stopped
#
# JOBS (all at once on the one GPU; at most 4; checked by benchmarks/gpu_jobs.py before any starts):
#   s4_all_best s4_diagnostic_best s4_all_const   benchmarks/s4_variants.py: the committed S4 configs
#                                                 keeping the best fold-9 epoch; s4_all_const: constant lr
#   s4_all s4_diagnostic                          the committed configs as they are (the first lease's runs)
#   ssl                                           the label-efficiency SSL run (--ssl-only; SSL_EPOCHS epochs)
#   auto                                          the first lease's plan: s4_all, then s4_diagnostic and ssl
#                                                 as the costs "setup" measured (MEASURE=1) allow
# default for "run": JOBS="s4_all_best s4_diagnostic_best".
#
# Every job stops at the call's deadline (BUDGET seconds after the call began; keep it under the
# device time left). The first job is protected: when, beside the others, it would not finish in
# time, the others are stopped (their checkpoints stay for a later call). A stopped run keeps its last
# checkpoint and "run" continues it (--resume). Each run directory (no checkpoints) and its log are
# packed into $OUT when the job ends.
set -uo pipefail
cd "$(dirname "$0")/.."
stage=${1:?stage: pack, setup, part, main or run}
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:$PWD/src ECG_TRANSFER_CACHE=/tmp/ecg-cache
export CUBLAS_WORKSPACE_CONFIG=:4096:8 # deterministic cuBLAS (runs are deterministic = true)
XFER=/tmp/xfer
T0=$(date +%s)
say() { echo "[gpu_issue14 $(($(date +%s) - T0)) s] $*"; }
link_data() { # data/ptbxl -> the restored tree (never over a real folder: this runs on a lease's copy)
  mkdir -p data && { [ ! -L data/ptbxl ] || rm data/ptbxl; }
  [ ! -e data/ptbxl ] || { say "data/ptbxl exists and is not a link: run this on the lease's copy"; return 1; }
  ln -s /tmp/ptbxl_root/ptbxl data/ptbxl
}
link_runs() { # runs/gpu -> /tmp/gpu_runs, where the runs outlive a call while the machine is warm
  mkdir -p /tmp/gpu_runs runs && { [ ! -L runs/gpu ] || rm runs/gpu; }
  [ ! -e runs/gpu ] || { say "runs/gpu exists and is not this script's link: move it away first"; return 1; }
  ln -s /tmp/gpu_runs runs/gpu
}
job() { # NAME DEADLINE COMMAND...: runs until the deadline, then packs its run directory into $OUT at once
  local name=$1 deadline=$2 && shift 2
  (timeout $deadline "$@" >>"$OUT/$name.log" 2>&1; echo "exit $?" >>"$OUT/$name.log"
    [ ! -d "runs/gpu/$name" ] || tar -czf "$OUT/$name.tar.gz" --exclude=checkpoint.pt --exclude='*.lock' "runs/gpu/$name") &
}
progress() {
  for f in runs/gpu/*/metrics.jsonl runs/gpu/ssl/*/*/metrics.jsonl; do
    [ -f "$f" ] && echo -n "$(dirname "$f" | xargs basename): $(wc -l <"$f") epochs; "
  done
}
run_jobs() { # JOB...: checked first, then all at once to this call's deadline; the first is protected
  local budget=${BUDGET:-560} # seconds for this call; its limit is 600
  link_runs || exit 1
  python3 benchmarks/s4_variants.py /tmp/s4_variants >/dev/null || exit 1
  local left=$((budget - ($(date +%s) - T0) - 25))
  [ "$left" -ge 60 ] || { say "only ${left} s left in this call: no job started"; exit 1; }
  local plan ssl_epochs wanted config
  plan=$(python3 benchmarks/gpu_jobs.py resolve --left $left --state /tmp/gpu_runs/jobs.json \
    --ssl-epochs "${SSL_EPOCHS:-0}" "$@") || exit 1
  read -r ssl_epochs wanted <<<"$plan"
  say "left ${left} s: jobs ${wanted}"
  export OMP_NUM_THREADS=$((16 / $(wc -w <<<"$wanted")))
  local t_start=$(date +%s) first=${wanted%% *} others= name
  [ "$first" = "$wanted" ] || others=${wanted#* }
  for name in $wanted; do
    case $name in
    s4_*) # a variant of benchmarks/s4_variants.py, or a committed config (s4_all, s4_diagnostic)
      config=/tmp/s4_variants/$name.json && [ -f $config ] || config=configs/ptbxl_$name.toml
      job $name $left python3 -m ecg_transfer train $config --run-dir runs/gpu/$name --no-progress --resume ;;
    ssl) job ssl $left python3 benchmarks/label_efficiency.py --root data/ptbxl --out runs/gpu/ssl --ssl-epochs "$ssl_epochs" --ssl-only ;;
    esac
  done
  while [ -n "$(jobs -r)" ]; do
    sleep 5
    [ $((SECONDS % 30)) -lt 5 ] || continue
    say "$(progress)"
    if [ -n "$others" ] && ! python3 benchmarks/gpu_jobs.py fits runs/gpu/$first $((left - ($(date +%s) - t_start))); then
      say "$first would not finish in time beside the others: stopping $others (checkpoints kept)"
      for name in $others; do pkill -TERM -f -- "runs/gpu/$name " ; done
      others=
    fi
  done
  say "jobs ended"
  tail -n 25 "$OUT"/*.log
  ls -l "$OUT"
}
take_part() { mkdir -p $XFER && mv .xfer[0-9]/* $XFER/ && ls -l $XFER; } # the part this call carried

case $stage in
pack)
  rm -rf .xfer_stage && mkdir -p .xfer_stage/pkg/shared/tools .xfer_stage/pkg/shared/data/ptbxl
  cp ../shared/tools/restore_ptbxl.py .xfer_stage/pkg/shared/tools/
  src=../shared/data/ptbxl dst=.xfer_stage/pkg/shared/data/ptbxl
  cp $src/{ptbxl_database.csv,scp_statements.csv,LICENSE.txt,ptbxl-records100.hea.tar.xz,ptbxl-records100.manifest.json} $dst/
  # no 500 Hz records: an empty records500 set keeps the restore tool as it is
  python3 -c "import lzma,json,tarfile,sys; d=sys.argv[1]; open(d+'/ptbxl-records500.sig.xz','wb').write(lzma.compress(b'')); json.dump({'records':[],'sha256':{}},open(d+'/ptbxl-records500.manifest.json','w')); tarfile.open(d+'/ptbxl-records500.hea.tar.xz','w:xz').close()" $dst
  (cd .xfer_stage/pkg && tar -cJf ../small.tar.xz shared)
  tar -cf .xfer_stage/bundle.tar -C .xfer_stage small.tar.xz -C "$(realpath $src)" ptbxl-records100.sig.xz
  (cd .xfer_stage && md5sum bundle.tar >bundle.md5 && split -n 3 -d bundle.tar part && rm bundle.tar && ls -l)
  for i in 1 2 3; do rm -rf .xfer$i && mkdir .xfer$i && ln .xfer_stage/part0$((i - 1)) .xfer$i/; done
  ln .xfer_stage/bundle.md5 .xfer3/
  ;;
setup)
  if [ -z "${DRY_RUN:-}" ]; then # DRY_RUN=1: a rehearsal on a CPU machine (its own packages, the CPU)
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  fi
  take_part
  dev=${DRY_RUN:+cpu} steps=${DRY_RUN:+2}
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch, pydantic, wfdb, ecg_transfer; print('torch', torch.__version__, torch.cuda.is_available() and torch.cuda.get_device_name())"
  [ -n "${MEASURE:-}" ] || { say "setup done (no cost measurement: MEASURE unset)"; exit 0; }
  python3 benchmarks/model_epoch_cost.py --device ${dev:-cuda} --batch-size 64 --models s4 xresnet1d101 --steps ${steps:-20} \
    --val-records 256 --out /tmp/cost_s4.json || exit 1
  python3 benchmarks/model_epoch_cost.py --device ${dev:-cuda} --batch-size 128 --models xresnet1d18 --ssl contrastive \
    --steps ${steps:-20} --val-records 256 --out /tmp/cost_ssl.json || exit 1
  cp /tmp/cost_*.json "$OUT"/
  say "setup done"
  ;;
part)
  take_part
  ;;
main)
  take_part
  cat $XFER/part0* >$XFER/bundle.tar && (cd $XFER && md5sum -c bundle.md5) || exit 1
  rm $XFER/part0*
  mkdir -p /tmp/restore && tar -xf $XFER/bundle.tar -C /tmp/restore && tar -xJf /tmp/restore/small.tar.xz -C /tmp/restore
  mv /tmp/restore/ptbxl-records100.sig.xz /tmp/restore/shared/data/ptbxl/
  python3 /tmp/restore/shared/tools/restore_ptbxl.py /tmp/ptbxl_root || exit 1
  say "PTB-XL restored"
  link_data || exit 1
  python3 -m ecg_transfer data cache --dataset ptbxl --root data/ptbxl --no-progress || exit 1
  say "cache built"
  [ -z "${JOBS:-}" ] || run_jobs $JOBS
  ;;
run)
  [ -d /tmp/ptbxl_root/ptbxl ] || { say "no restored PTB-XL here: call main first (the machine keeps /tmp only while warm)"; exit 1; }
  link_data || exit 1
  run_jobs ${JOBS:-s4_all_best s4_diagnostic_best}
  ;;
*)
  echo "unknown stage: $stage" >&2
  exit 2
  ;;
esac
