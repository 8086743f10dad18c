"""PyTorch backend (CPU or CUDA; fp16 autocast on CUDA when precision is 'fp16' or 'auto'; CPU runs fp32)."""
from __future__ import annotations

import time

import numpy as np
import torch

from ..model import load_model
from .base import MAX_BATCH, Backend, BackendError, check_precision


class TorchBackend(Backend):
    name = 'torch'

    def __init__(self, model_path, device: str = 'auto', precision: str = 'auto', max_batch: int = MAX_BATCH, **_):
        if device in ('auto', ''):
            device = 'cuda' if torch.cuda.is_available() else 'cpu'
        if device.startswith('cuda') and not torch.cuda.is_available():
            raise BackendError('CUDA requested but torch.cuda.is_available() is False')
        gpu = {'auto': 'fp16', 'int8': 'fp32'}.get(check_precision(precision), precision)   # int8: onnxruntime CPU
        super().__init__(model_path, device, gpu if device.startswith('cuda') else 'fp32', max_batch)
        self.model = load_model(model_path, device)
        self._frame = None   # model.frame.FrameGraph, built on the first frame

    @torch.inference_mode()
    def _run_frame(self, reference, damaged, failed, origins):
        if self._frame is None:
            from ..model.frame import FrameGraph
            self._frame = FrameGraph(self.model).to(self.device).eval()
        r, d, f, o = self._tensors(reference, damaged, failed, origins)
        marks = _StageMarks(self.device)
        with torch.autocast('cuda', dtype=torch.float16, enabled=self.precision == 'fp16'):
            out = self._frame(r, d, f, o, mark=marks).cpu().numpy()   # the copy waits for the GPU
        self.frame_stages = marks.elapsed()
        return out

    def _tensors(self, *arrays):
        return [torch.from_numpy(np.ascontiguousarray(a)).to(self.device) for a in arrays]

    @torch.inference_mode()
    def _run(self, ref, damaged, patch_mask):
        r, d, m = self._tensors(ref, damaged, patch_mask)
        with torch.autocast('cuda', dtype=torch.float16, enabled=self.precision == 'fp16'):
            out = self.model(r, d, m.bool(), sample=False)['restored']
        return out.float().cpu().numpy()

    @torch.inference_mode()
    def restore_with_uncertainty(self, ref, damaged, patch_mask, samples: int):
        r, d, m = self._tensors(ref, damaged, patch_mask)
        outs = [self.model.sample_stats(r[i:i + self.max_batch], d[i:i + self.max_batch],
                                        m[i:i + self.max_batch].bool(), k=samples)
                for i in range(0, r.shape[0], self.max_batch)]
        return tuple(torch.cat(x).float().cpu().numpy() for x in zip(*outs))


class _StageMarks:
    """Stage boundaries inside the frame graph: CUDA events on a GPU (recorded in the stream, read after
    the output's copy has synchronized it: no extra wait), host clock on a CPU. elapsed() -> ms per
    stage, in order, the last stage ('merge': blend and select) up to the end."""

    def __init__(self, device: str):
        self.cuda = str(device).startswith('cuda')
        self.marks = [('start', self._now())]

    def _now(self):
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def __call__(self, stage: str) -> None:
        self.marks.append((stage, self._now()))

    def elapsed(self) -> dict[str, float]:
        marks = self.marks + [('merge', self._now())]
        if self.cuda:
            marks[-1][1].synchronize()
            span = lambda a, b: a.elapsed_time(b)  # noqa: E731
        else:
            span = lambda a, b: 1e3 * (b - a)  # noqa: E731
        return {stage: span(t0, t1) for (_, t0), (stage, t1) in zip(marks, marks[1:])}
