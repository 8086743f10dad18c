#!/usr/bin/env bash
# A bounded training burst on a borrowed GPU machine that cannot see ../shared (models/README.md, GPU burst).
#   bash scripts/gpu_burst.sh pack [DATA]   here: a WebP training subset of DATA (default ../shared/data)
#                                           in .pack/ (~37 MB: 100-frame runs of each train clip, 40 val frames)
#   bash scripts/gpu_burst.sh run [END_S]   there, from the repo root with .pack/ beside it: the CUDA tests,
#                                           bench/engines.py on torch CUDA, then two training runs side by side
#                                           (A: the shipped model continued; B: the half-width model continued),
#                                           each with its lr annealed to the time left; results in $OUT/*.tar.
# The whole `run` ends about END_S seconds (default 540) after it starts.
set -u
mode=${1:-}
if [ "$mode" = pack ]; then
  DATA=${2:-../shared/data}
  rm -rf .pack && mkdir -p .pack
  cp runs/small64/best.safetensors .pack/small64.safetensors && cp runs/small64/best.json .pack/small64.json \
    || echo "no runs/small64: run B needs its own init_from"
  ${PYTHON:-.venv/bin/python} - "$DATA" <<'PY'
import glob, os, sys
import cv2
data = sys.argv[1]
def pack(src, dst, lo, hi):
    os.makedirs(f'.pack/{dst}', exist_ok=True)
    for i, f in enumerate(sorted(glob.glob(f'{data}/{src}/*.jpg'))[lo:hi]):
        cv2.imwrite(f'.pack/{dst}/{i:06d}.webp', cv2.imread(f), [cv2.IMWRITE_WEBP_QUALITY, 85])
for r in range(1, 5):
    for part, lo in (('a', 0), ('b', 200)):
        pack(f'train/udacity_ch2_run0{r}', f'train/udacity_ch2_run0{r}_{part}', lo, lo + 100)
pack('train/kitti_odom07_left_gray', 'train/kitti_odom07_a', 0, 80)
pack('train/kitti_odom07_left_gray', 'train/kitti_odom07_b', 80, 160)
pack('val/udacity_lanelines_solidwhiteright', 'val/udacity_lanelines_40', 0, 40)
PY
  du -sh .pack
  exit 0
elif [ "$mode" != run ]; then
  sed -n 2,9p "$0"; exit 2
fi
END_S=${2:-540}
T0=$(date +%s)
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2
OUT=${OUT:-/tmp/out}; rm -rf /tmp/runs; mkdir -p "$OUT" /tmp/runs
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; nproc
  python3 -c "import sys,torch,cv2;print(sys.version.split()[0],torch.__version__,torch.version.cuda,cv2.__version__)"
} 2>&1 | tee "$OUT/env.txt"
echo "== CUDA tests"
timeout 100 python3 -m pytest -q -p no:cacheprovider test/test_engines.py -m cuda -rs 2>&1 | tail -8 | tee "$OUT/cuda_tests.txt"
echo "== engines bench"
timeout 110 python3 bench/engines.py --backends "${BENCH_BACKENDS:-torch-cuda-fp32,torch-cuda-fp16}" \
  --batches 1,8,32 2>&1 | tee "$OUT/bench_engines.txt" | tail -15
TL=$(python3 -c "print(max(0.3, ($T0 + $END_S - 25 - $(date +%s)) / 60))")
echo "== training, time limit $TL min"
train() {  # name workers overrides...
  local name=$1 workers=$2; shift 2
  python3 -c "import cv2, sys; cv2.setNumThreads(1)
from smcvae_ros.training.train import train, load_config
train(load_config('config/train.yaml', sys.argv[1:]))" train_dir=.pack/train val_dir=.pack/val \
    out_dir=/tmp/runs/$name steps=100000 warmup=200 val_every=500 ckpt_every=500 workers=$workers \
    time_limit_min=$TL anneal_by_time=true frame_cache_mb=512 "$@" > /tmp/runs/$name.log 2>&1
}
train A 7 init_from=models/smcvae_tile64.safetensors lr=2e-4 &
train B 6 init_from=.pack/small64.safetensors lr=4e-4 model.enc_dim=64 model.dec_dim=64 model.latent_dim=32 \
  model.enc_heads=2 model.dec_heads=2 &
wait
for n in A B; do
  echo "== run $n"; tr '\r' '\n' < /tmp/runs/$n.log | grep -v '^train:' | grep . | tail -20
  tar -C /tmp/runs -cf "$OUT/run$n.tar" --exclude='*.optim.safetensors' --exclude=tb $n $n.log
done
echo "total $(( $(date +%s) - T0 )) s"
