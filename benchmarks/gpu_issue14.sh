#!/usr/bin/env bash
# Issue 14's GPU runs in one short lease of the `device` tool (one H200, 15 minutes in all):
# S4 on PTB-XL at 100 Hz with the configs' own settings (configs/ptbxl_s4_all.toml and
# configs/ptbxl_s4_diagnostic.toml: 50 epochs, fp32, the last epoch's model) and the long
# self-supervised run of the label-efficiency benchmark (benchmarks/label_efficiency.py --ssl-only;
# its fine-tunes, cheap at 1 % and 10 % of the labels, run afterwards on any machine).
#
# A lease call carries at most 64 MiB, and PTB-XL (packed as in ../shared/data) is 171 MB, so the
# data travel in three parts, .xfer1/ .xfer2/ .xfer3/ (ignored by git), one named in `carry` per call, while
# the machine stays warm; the last call restores the PhysioNet tree with ../shared/tools'
# restore_ptbxl.py (every file checked against the original sha256) and runs the jobs:
#
#   bash benchmarks/gpu_issue14.sh pack          # here: .whl (packages the machine lacks) and .xfer_stage/part0{0,1,2}
#   bash benchmarks/gpu_issue14.sh setup         # call 1 (carry .whl .xfer1): packages, part 1, GPU cost per step
#   bash benchmarks/gpu_issue14.sh part          # call 2 (carry .xfer2): part 2
#   BUDGET=S bash benchmarks/gpu_issue14.sh main # call 3 (carry .xfer3): part 3, restore, cache, the runs
#
# "main" sizes the self-supervised run to the time left (from the per-step costs "setup" measured),
# stops every job at its deadline (BUDGET seconds after the call began: keep it under the device time
# left) and packs each run directory (no checkpoints) and its log into $OUT as soon as it ends.
set -uo pipefail
cd "$(dirname "$0")/.."
stage=${1:?stage: pack, setup, part or main}
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site:$PWD/src ECG_TRANSFER_CACHE=/tmp/ecg-cache
export CUBLAS_WORKSPACE_CONFIG=:4096:8 # deterministic cuBLAS (runs are deterministic = true)
XFER=/tmp/xfer
T0=$(date +%s)
say() { echo "[gpu_issue14 $(($(date +%s) - T0)) s] $*"; }
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
  budget=${BUDGET:-560} # seconds for this call; its limit is 600
  cat $XFER/part0* >$XFER/bundle.tar && (cd $XFER && md5sum -c bundle.md5) || exit 1
  rm $XFER/part0*
  mkdir -p /tmp/restore && tar -xf $XFER/bundle.tar -C /tmp/restore && tar -xJf /tmp/restore/small.tar.xz -C /tmp/restore
  mv /tmp/restore/ptbxl-records100.sig.xz /tmp/restore/shared/data/ptbxl/
  python3 /tmp/restore/shared/tools/restore_ptbxl.py /tmp/ptbxl_root || exit 1
  say "PTB-XL restored"
  mkdir -p data runs/gpu && rm -rf data/ptbxl && ln -s /tmp/ptbxl_root/ptbxl data/ptbxl
  python3 -m ecg_transfer data cache --dataset ptbxl --root data/ptbxl --no-progress || exit 1
  say "cache built"
  left=$((budget - ($(date +%s) - T0) - 25))
  read -r diag ssl_epochs < <(python3 benchmarks/gpu_issue14_plan.py /tmp/cost_s4.json /tmp/cost_ssl.json $left)
  say "left ${left} s: S4 diagnostic too: ${diag}; SSL epochs: ${ssl_epochs}"
  export OMP_NUM_THREADS=5
  job() { # NAME COMMAND...: runs until the deadline, then packs its run directory into $OUT at once
    local name=$1 && shift
    (timeout $left "$@" >"$OUT/$name.log" 2>&1; echo "exit $?" >>"$OUT/$name.log"
      tar -czf "$OUT/$name.tar.gz" --exclude=checkpoint.pt --exclude='*.lock' "runs/gpu/$name") &
  }
  job s4_all python3 -m ecg_transfer train configs/ptbxl_s4_all.toml --run-dir runs/gpu/s4_all --no-progress
  if [ "$diag" = 1 ]; then
    job s4_diagnostic python3 -m ecg_transfer train configs/ptbxl_s4_diagnostic.toml --run-dir runs/gpu/s4_diagnostic --no-progress
  fi
  if [ "$ssl_epochs" -gt 0 ]; then
    job le python3 benchmarks/label_efficiency.py --root data/ptbxl --out runs/gpu/le --ssl-epochs "$ssl_epochs" --ssl-only
  fi
  while [ -n "$(jobs -r)" ]; do
    sleep 5
    [ $((SECONDS % 30)) -lt 5 ] && say "$(for f in runs/gpu/*/metrics.jsonl runs/gpu/le/*/*/metrics.jsonl; do [ -f "$f" ] && echo -n "$(dirname "$f" | xargs basename): $(wc -l <"$f") epochs; "; done)"
  done
  say "jobs ended"
  tail -n 25 "$OUT"/*.log
  ls -l "$OUT"
  ;;
*)
  echo "unknown stage: $stage" >&2
  exit 2
  ;;
esac
