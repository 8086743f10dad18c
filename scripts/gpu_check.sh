#!/usr/bin/env bash
# The frame graph on a GPU, one command (<= 5 min), on a lent GPU machine from the repo root (its image
# has PyTorch, onnx, onnxruntime; no TensorRT, no ROS 2) or on a vehicle:
#   bash scripts/gpu_check.sh
# 1. the CUDA tests (frame graph on CUDA vs CPU, fp16; the engine CUDA tests);
# 2. bench/frame_graph.py at 1280x720, ~10 % blocks: per damaged frame p50 / p99 of the frame graph on
#    torch CUDA fp32 / fp16 (and onnxruntime CUDA where its CUDA provider is installed), against the
#    OpenCV-cue path with the model on the GPU; then 8 cameras x 30 Hz, camera 0 failing every frame;
# 3. the node's round trip (bench/node_latency.py) where rclpy is importable, else says it was not run.
# Tables go to stdout and $OUT (default /tmp/out). TensorRT is run only where `import tensorrt` works.
set -u
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
PY=${PYTHON:-python3}
MODEL=${MODEL:-models/smcvae_tile64_tensor.safetensors}
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  $PY -c "import torch, onnxruntime as o; print('torch', torch.__version__, torch.cuda.get_device_name(0), \
'| onnxruntime', o.__version__, o.get_available_providers())"
  $PY -c "import tensorrt as t; print('tensorrt', t.__version__)" 2>/dev/null \
    || echo "TensorRT: not installed here, the TensorRT paths were NOT run"; } | tee "$OUT/gpu.txt"
timeout 150 $PY -m pytest -q -p no:cacheprovider test/test_frame_graph.py test/test_tensorrt_frame.py test/test_engines.py -k "cuda or frame" 2>&1 \
  | tail -4 | tee "$OUT/tests.txt"
PATHS=frame:torch-cuda,frame:torch-cuda-fp16,opencv:torch-cuda
$PY -c "import onnxruntime as o, sys; sys.exit('CUDAExecutionProvider' not in o.get_available_providers())" \
  && PATHS=$PATHS,frame:onnxruntime-cuda
timeout 200 $PY bench/frame_graph.py --tensor-model "$MODEL" --paths "$PATHS" --frames 40 \
  --cameras 8 --hz 30 --seconds 10 2>&1 | grep -v Warning | tee "$OUT/frame_graph.md"
if $PY -c "import rclpy" 2>/dev/null; then
  timeout 120 $PY bench/node_latency.py --frames 20 --model "$MODEL" --backend torch 2>&1 | tee "$OUT/node_latency.md"
else
  echo "node round trip: rclpy not importable here, NOT run (bench/node_latency.py --model $MODEL on a vehicle)" \
    | tee "$OUT/node_latency.md"
fi
