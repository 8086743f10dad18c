"""The restoration cues as tensor ops (`cues: tensor`): one graph with the model, on any backend.

The same cues as restoration.align (the OpenCV path), re-expressed with ops that run on a GPU and
export to ONNX opset 17 and TensorRT (AveragePool, Resize, GridSample, elementwise math; no
data-dependent control flow, every shape dynamic):

- fill: push-pull (multi-scale normalized convolution) of the damaged frame from its healthy
  pixels, instead of `cv2.inpaint` Telea;
- flow: coarse-to-fine dense Lucas-Kanade from the damaged frame to the reference, each pixel's
  equations weighted by its health (failed pixels carry no weight, so no fill smudge enters the
  flow and no second, reference-filled flow is needed); the flow inside the hole margin is then
  filled from the hole's edge inwards (fill_flow, as `smooth_flow_fill`);
- homography: one plane fitted to the healthy flow by iteratively reweighted least squares (Cauchy
  weights, a fixed number of rounds, the 8x8 normal equations solved by unrolled elimination),
  instead of RANSAC;
- warps: `grid_sample` (bilinear, border replicate), as `cv2.remap`.

All images are (B,C,H,W) float in [0,1]; failed / weights (B,1,H,W) in [0,1]; flow (B,2,H,W) in
pixels, x then y, with out(p) = ref(p + flow(p)).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

PP_LEVELS = 9            # push-pull levels: 2^9 = 512 px reach, enough for any hole in a 1280 px frame
PP_GAIN = 4.0            # a coarse cell counts as fully known from 1/PP_GAIN of its area
FLOW_LEVELS = 6          # pyramid levels of the flow, the finest at half resolution (as DIS MEDIUM)
FLOW_ITERS = 4           # Lucas-Kanade iterations per level
FLOW_RADIUS = 4          # window radius (px at each level) of the LK normal equations
FLOW_SMOOTH = 2           # radius of the confidence-weighted flow smoothing after each iteration
SEARCH_FROM = 1          # levels >= this (1/4 of the frame and coarser) start with a discrete search
SEARCH_RANGE = 1         # +- px of that search at each level
FLOW_DAMP = 0.3          # Levenberg-Marquardt damping, relative to the window's gradient energy
LARGE_FROM = 0.5
LARGE_SPAN = 0.3
HOLE_PRIOR_LARGE = 0.05
REACH_LEVELS = 5         # 2^5 = 32-px cells: the frame share of cells under REACH_MIN healthy ...
REACH_MIN = 0.2          # ... is the failure's size for the zero-motion prior (LARGE_FROM, LARGE_SPAN)
HOLE_PRIOR = 0.01        # weight of the reference's own (zero-motion) equations in the holes
FLOW_REG = 1e-4          # Tikhonov term of the 2x2 solve: no texture, no update
HOLE_MARGIN = 2          # px around failed pixels whose flow is replaced by the fill (as align.hole_margin)
FILL_STEPS = 16          # onion-peel steps of the flow's hole fill at 1/4 resolution: 64 px reach from a hole's edge
HOM_STEP = 8             # px between the flow samples the homography is fitted to
HOM_ROUNDS = 6           # IRLS rounds
HOM_SCALE = 2.0          # px: Cauchy scale of the reprojection residual (RANSAC's 2 px threshold)
GRAY = (0.299, 0.587, 0.114)


def gray(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x.unbind(1)
    return (GRAY[0] * r + GRAY[1] * g + GRAY[2] * b).unsqueeze(1)


def _down(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, 2, ceil_mode=True)


def _resize(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode='bilinear', align_corners=False)


def push_pull(x: torch.Tensor, w: torch.Tensor, levels: int = PP_LEVELS) -> torch.Tensor:
    """x filled where its weight w is low from the weighted values around it, coarse to fine: at
    w = 1 the result is x exactly, at w = 0 the upsampled normalized average of the level below."""
    xs, ws = [x * w], [w]
    for _ in range(levels):
        xs.append(_down(xs[-1]))
        ws.append(_down(ws[-1]))
    v = xs[-1] / ws[-1].clamp_min(1e-6)
    for k in range(levels - 1, -1, -1):
        a = ws[k] if k == 0 else (ws[k] * PP_GAIN).clamp(max=1.0)
        v = a * (xs[k] / ws[k].clamp_min(1e-6)) + (1.0 - a) * _resize(v, xs[k])
    return v


def fill_holes(damaged: torch.Tensor, failed: torch.Tensor) -> torch.Tensor:
    """The damaged frame with its failed pixels push-pull filled (healthy pixels unchanged)."""
    healthy = 1.0 - failed
    return torch.where(failed > 0.5, push_pull(damaged, healthy), damaged)


def base_grid(like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel coordinates (1,1,H,W) x and y of a (B,C,H,W) tensor (dynamic shape)."""
    h, w = like.shape[-2:]
    ys = torch.arange(h, dtype=like.dtype, device=like.device).view(1, 1, -1, 1)
    xs = torch.arange(w, dtype=like.dtype, device=like.device).view(1, 1, 1, -1)
    return xs + 0 * ys, ys + 0 * xs


def sample(img: torch.Tensor, px: torch.Tensor, py: torch.Tensor) -> torch.Tensor:
    """img read at pixel positions (B,1,H',W') px, py: bilinear, border replicate (cv2.remap)."""
    one = img[:1, :1] * 0.0 + 1.0
    sx = 2.0 / (one[0, 0, 0].sum() - 1.0).clamp_min(1.0)     # W - 1 and H - 1 as tensors (dynamic shapes)
    sy = 2.0 / (one[0, 0, :, 0].sum() - 1.0).clamp_min(1.0)
    grid = torch.cat([px * sx - 1.0, py * sy - 1.0], 1).permute(0, 2, 3, 1)
    return F.grid_sample(img, grid, mode='bilinear', padding_mode='border', align_corners=True)


def warp(img: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    gx, gy = base_grid(flow)
    return sample(img, gx + flow[:, :1], gy + flow[:, 1:])


def _box(x: torch.Tensor, r: int) -> torch.Tensor:
    """Mean over the (2r+1)^2 window inside the frame, as two 1-D passes (exactly the 2-D mean), per
    channel: callers stack what they filter into channels, one call instead of several."""
    k = 2 * r + 1
    x = F.avg_pool2d(x, (1, k), stride=1, padding=(0, r), count_include_pad=False)
    return F.avg_pool2d(x, (k, 1), stride=1, padding=(r, 0), count_include_pad=False)


def _neighbour(x: torch.Tensor, kernel: list[float], horizontal: bool) -> torch.Tensor:
    """x's neighbour (B,1,H,W) one px to the right / below (kernel [0,0,1]) or left / above
    ([1,0,0]), the border replicated. Built from a zero-padded conv plus x where no neighbour is:
    no negative slice or computed pad, which the ONNX exporter resolves against stale static shapes."""
    shape, pad = ((1, 1, 1, 3), (0, 1)) if horizontal else ((1, 1, 3, 1), (1, 0))
    k = torch.tensor(kernel, dtype=x.dtype, device=x.device).view(shape)
    inside = F.conv2d(torch.ones_like(x), k, padding=pad)
    return F.conv2d(x, k, padding=pad) + (1.0 - inside) * x


def _grad(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Central differences of a (B,1,H,W) image, the border replicated."""
    r, lt = (_neighbour(x, k, True) for k in ([0.0, 0.0, 1.0], [1.0, 0.0, 0.0]))
    d, u = (_neighbour(x, k, False) for k in ([0.0, 0.0, 1.0], [1.0, 0.0, 0.0]))
    return 0.5 * (r - lt), 0.5 * (d - u)


def lk_flow(src: torch.Tensor, dst: torch.Tensor, weight: torch.Tensor, levels: int, iters: int,
            radius: int) -> torch.Tensor:
    """Dense flow (B,2,H,W) with dst(p + flow) ~ src(p), coarse to fine; src, dst gray (B,1,H,W),
    weight (B,1,H,W): how much each src pixel is trusted (0 = failed)."""
    pyr = [(src, dst, weight)]
    for _ in range(levels - 1):
        s, d, w = pyr[-1]
        w2 = _down(w)
        pyr.append((_down(s * w) / w2.clamp_min(1e-6), _down(d), w2))
    flow = torch.cat([pyr[-1][1] * 0.0, pyr[-1][1] * 0.0], 1)
    for k in range(levels - 1, -1, -1):
        s, d, w = pyr[k]
        if k < levels - 1:
            flow = 2.0 * _resize(flow, s)
        gx0, gy0 = base_grid(s)
        wsum, sw = _box(torch.cat([w, s * w], 1), radius).split(1, 1)
        wsum = wsum.clamp_min(1e-6)
        s_n = s - sw / wsum
        if k >= SEARCH_FROM:
            flow = _search(s_n, d, w, wsum, flow, gx0, gy0, radius)
        dg = torch.cat([d, *_grad(d)], 1)                  # dst and its gradients, warped together
        for _ in range(iters):
            dw, ix, iy = sample(dg, gx0 + flow[:, :1], gy0 + flow[:, 1:]).split(1, 1)
            it = (dw - _box(dw * w, radius) / wsum) - s_n      # local-mean normalized residual
            terms = torch.cat([ix * ix, ix * iy, iy * iy, ix * it, iy * it], 1) * w   # normal equations
            a11, a12, a22, b1, b2 = _box(terms, radius).split(1, 1)
            damp = FLOW_REG + FLOW_DAMP * (a11 + a22)        # Levenberg-Marquardt: no step along an edge
            a11, a22 = a11 + damp, a22 + damp
            det = a11 * a22 - a12 * a12
            du = (a12 * b2 - a22 * b1) / det
            dv = (a12 * b1 - a11 * b2) / det
            flow = flow + torch.cat([du, dv], 1).clamp(-2.0, 2.0)
            # densify: each pixel takes the confidence-weighted mean flow of its window (as DIS
            # averages its patches' flows), confidence = the smaller eigenvalue proxy det / trace
            conf = w * det / (a11 + a22)
            fc, c = _box(torch.cat([flow * conf, conf], 1), FLOW_SMOOTH).split([2, 1], 1)
            flow = (fc + 1e-9 * flow) / (c + 1e-9)                                   # no confidence: keep
    return flow


def _search(s_n, d, w, wsum, flow, gx0, gy0, radius: int) -> torch.Tensor:
    """Discrete step of the coarse levels (as DIS's patch search, so large motion is not lost to
    LK's small-step linearization): every offset of the flow within +-SEARCH_RANGE px is scored by
    the weighted mean |residual| over the window, each pixel takes the best."""
    offsets = [(ox, oy) for oy in range(-SEARCH_RANGE, SEARCH_RANGE + 1)
               for ox in range(-SEARCH_RANGE, SEARCH_RANGE + 1)]
    dw = torch.cat([sample(d, gx0 + flow[:, :1] + ox, gy0 + flow[:, 1:] + oy) for ox, oy in offsets], 1)
    r = ((dw - _box(dw * w, radius) / wsum) - s_n).abs()   # (B,K,H,W), all offsets at once
    cost = _box(w * r, radius) / wsum
    best = (cost <= cost.amin(1, keepdim=True)).to(cost.dtype)
    best = best / best.sum(1, keepdim=True)
    off = torch.tensor(offsets, dtype=flow.dtype, device=flow.device).view(1, -1, 2, 1, 1)   # (1,K,2,1,1)
    return flow + (best.unsqueeze(2) * off).sum(1)


def onion_fill(x: torch.Tensor, known: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x (B,C,H,W) filled inwards from where `known` (B,1,H,W, 0/1) is, one ring per step: each
    unknown pixel next to known ones takes their mean (3x3) and becomes known. The tensor form of a
    Telea-style fill: a hole takes the values at its own edge, not a wide average. Returns the
    filled x and the known map after `steps` rings (holes wider than 2 * steps px stay unknown)."""
    x = x * known
    for _ in range(steps):
        s = F.avg_pool2d(torch.cat([x, known], 1), 3, stride=1, padding=1, count_include_pad=False)
        reached = (s[:, -1:] > 0).to(x.dtype) * (1.0 - known)
        x = x + reached * s[:, :-1] / s[:, -1:].clamp_min(1e-6)
        known = known + reached
    return x, known


def fill_flow(flow: torch.Tensor, full: torch.Tensor, steps: int = FILL_STEPS) -> torch.Tensor:
    """The flow (B,2,H,W) at pixels where `full` is 0 replaced by a fill from the healthy flow around
    them (as align.smooth_flow_fill, Telea at 1/4 resolution): onion_fill at half this resolution,
    push-pull beyond its reach, upsampled into the holes only."""
    w = _down(full)
    known = (w > 0.999).to(w.dtype)                  # a coarse pixel is healthy when all under it are
    x, known = onion_fill(_down(flow * full) / w.clamp_min(1e-6), known, steps)
    x = push_pull(x, known)                          # exact where the onion reached, fills beyond it
    return full * flow + (1.0 - full) * _resize(x, flow)


def hole_margin(failed: torch.Tensor, px: int = HOLE_MARGIN) -> torch.Tensor:
    """(B,1,H,W) 1 where a failed pixel is within px (the failed pixels grown by px)."""
    k = 2 * px + 1                                      # separable: the square max as two 1-D passes
    grown = F.max_pool2d(failed, (1, k), stride=1, padding=(0, px))
    return F.max_pool2d(grown, (k, 1), stride=1, padding=(px, 0))


def _unreached(failed: torch.Tensor) -> torch.Tensor:
    """(B,1,1,1) the frame share far from healthy pixels: 32-px cells under REACH_MIN healthy.
    Large failures are judged by it, not by the failed share: 70 % in 16-px cells leaves healthy
    pixels in every 32-px cell, whose flow fills the holes well; 70 % in large blocks does not."""
    cell = 1.0 - failed
    for _ in range(REACH_LEVELS):
        cell = _down(cell)
    return (cell < REACH_MIN).to(failed.dtype).mean((1, 2, 3), keepdim=True)


def estimate_flow(ref: torch.Tensor, damaged: torch.Tensor, failed: torch.Tensor,
                  holes: torch.Tensor | None = None) -> torch.Tensor:
    """Flow (B,2,H,W) from the damaged frame to the reference at full resolution: LK from half
    resolution down, weighted by health. The hole margin holds the reference itself at a small
    weight (HOLE_PRIOR): no motion where no healthy pixel says otherwise, which is what large
    failures of a slow scene need (the OpenCV path's reference-filled flow); the flow there is then
    filled from the healthy pixels around (fill_flow), as far as they reach at full weight.
    holes: hole_margin(failed), when the caller has it."""
    holes = hole_margin(failed) if holes is None else holes
    healthy = 1.0 - holes
    src = torch.where(holes > 0.5, gray(ref), gray(damaged))
    w = _down(healthy)
    full = (w > 0.999).to(w.dtype)                  # a half-resolution pixel is healthy when all under it are
    # large failures: the zero-motion prior grows and the flow's hole fill fades out
    t = ((_unreached(failed) - LARGE_FROM) / LARGE_SPAN).clamp(0.0, 1.0)
    prior = HOLE_PRIOR + t * (HOLE_PRIOR_LARGE - HOLE_PRIOR)
    weight = full + prior * (1.0 - full)
    flow = lk_flow(_down(src), _down(gray(ref)), weight, FLOW_LEVELS, FLOW_ITERS, FLOW_RADIUS)
    flow = (1.0 - t) * fill_flow(flow, full) + t * flow
    return 2.0 * _resize(flow, ref)


def _solve(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Solve (B,n,n) a x = (B,n) b for symmetric positive definite a, by unrolled Gauss-Jordan
    elimination without pivoting (exportable: slices and elementwise ops only)."""
    n = a.shape[-1]
    m = torch.cat([a, b.unsqueeze(2)], 2)
    for k in range(n):
        row = m[:, k:k + 1] / m[:, k:k + 1, k:k + 1]
        m = m - m[:, :, k:k + 1] * row
        m = torch.cat([m[:, :k], row, m[:, k + 1:]], 1)
    return m[:, :, n]


def fit_homography(flow: torch.Tensor, weight: torch.Tensor, step: int = HOM_STEP,
                   rounds: int = HOM_ROUNDS) -> torch.Tensor:
    """(B,3,3) homography H mapping p to p + flow(p), fitted to the flow on a `step`-px grid by IRLS
    with Cauchy weights on the reprojection error (scale HOM_SCALE px) times `weight` (B,1,H,W)."""
    f = flow[:, :, ::step, ::step]
    wt = weight[:, :, ::step, ::step].flatten(1)
    gx, gy = base_grid(f)
    x, y = (gx * step).flatten(1), (gy * step).flatten(1)
    u, v = x + f[:, 0].flatten(1), y + f[:, 1].flatten(1)
    # normalize coordinates for conditioning: centre and scale by the frame size
    cx, cy = x.amax(1, keepdim=True) * 0.5, y.amax(1, keepdim=True) * 0.5
    sc = 1.0 / torch.maximum(cx, cy).clamp_min(1.0)
    xn, yn, un, vn = (x - cx) * sc, (y - cy) * sc, (u - cx) * sc, (v - cy) * sc
    one, zero = torch.ones_like(xn), torch.zeros_like(xn)
    ax = torch.stack([xn, yn, one, zero, zero, zero, -xn * un, -yn * un], 2)   # (B,n,8): h11..h32
    ay = torch.stack([zero, zero, zero, xn, yn, one, -xn * vn, -yn * vn], 2)
    a = torch.cat([ax, ay], 1)
    rhs = torch.cat([un, vn], 1)
    eye = torch.eye(8, dtype=flow.dtype, device=flow.device).unsqueeze(0)
    rw = wt
    h = None
    for _ in range(rounds):
        w2 = torch.cat([rw, rw], 1).unsqueeze(2)
        h = _solve((a * w2).transpose(1, 2) @ a + 1e-6 * eye, ((a * w2).transpose(1, 2) @ rhs.unsqueeze(2))[:, :, 0])
        den = h[:, 6:7] * xn + h[:, 7:8] * yn + 1.0
        pu = (h[:, 0:1] * xn + h[:, 1:2] * yn + h[:, 2:3]) / den
        pv = (h[:, 3:4] * xn + h[:, 4:5] * yn + h[:, 5:6]) / den
        err2 = ((pu - un) ** 2 + (pv - vn) ** 2) / (sc * HOM_SCALE) ** 2
        rw = wt / (1.0 + err2)
    hn = torch.cat([h, torch.ones_like(h[:, :1])], 1).view(-1, 3, 3)
    # back to pixels: H = T^-1 Hn T with T = [[s,0,-s cx],[0,s,-s cy],[0,0,1]]
    s1 = sc[:, 0]
    t = torch.zeros_like(hn)
    t = t + torch.stack([torch.stack([s1, 0 * s1, -s1 * cx[:, 0]], 1), torch.stack([0 * s1, s1, -s1 * cy[:, 0]], 1),
                         torch.stack([0 * s1, 0 * s1, 1 + 0 * s1], 1)], 1)
    ti = torch.stack([torch.stack([1 / s1, 0 * s1, cx[:, 0]], 1), torch.stack([0 * s1, 1 / s1, cy[:, 0]], 1),
                      torch.stack([0 * s1, 0 * s1, 1 + 0 * s1], 1)], 1)
    return ti @ hn @ t


def homography_warp(ref: torch.Tensor, hom: torch.Tensor) -> torch.Tensor:
    """ref read at H p for every pixel p (cv2.warpPerspective with WARP_INVERSE_MAP)."""
    gx, gy = base_grid(ref)
    k = lambda i, j: hom[:, i, j].view(-1, 1, 1, 1)  # noqa: E731
    den = k(2, 0) * gx + k(2, 1) * gy + k(2, 2)
    px = (k(0, 0) * gx + k(0, 1) * gy + k(0, 2)) / den
    py = (k(1, 0) * gx + k(1, 1) * gy + k(1, 2)) / den
    return sample(ref, px, py)


def tensor_cues(ref: torch.Tensor, damaged: torch.Tensor, failed: torch.Tensor,
                n_refs: int = 3) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The model's cues from one damaged frame, as align.model_cues: [flow-warped reference, raw
    reference, homography-warped reference][:n_refs] and the filled damaged frame."""
    fill = fill_holes(damaged, failed)
    holes = hole_margin(failed)
    flow = estimate_flow(ref, damaged, failed, holes)
    refs = [warp(ref, flow), ref]
    if n_refs > 2:
        refs.append(homography_warp(ref, fit_homography(flow, 1.0 - holes)))
    return refs[:n_refs], fill


def to_tensor(img) -> torch.Tensor:
    """(H,W,C) uint8 array -> (1,C,H,W) float in [0,1] ((H,W) bool / uint8 -> (1,1,H,W) 0/1)."""
    t = torch.from_numpy(img)
    if t.dtype == torch.bool:
        return t[None, None].float()
    return t.permute(2, 0, 1)[None].float() / 255.0


def to_image(t: torch.Tensor):
    """(1,C,H,W) float in [0,1] -> (H,W,C) uint8 array (rounded)."""
    return (t[0].permute(1, 2, 0).clamp(0, 1) * 255.0).round().to(torch.uint8).numpy()


@torch.no_grad()
def numpy_cues(ref, damaged, failed, n_refs: int = 3):
    """tensor_cues on (H,W,3) uint8 frames and an (H,W) bool mask -> ([uint8 reference cues], uint8
    fill): the training tiles of a `cues: tensor` model are cut from these."""
    refs, fill = tensor_cues(to_tensor(ref), to_tensor(damaged), to_tensor(failed), n_refs)
    return [to_image(r) for r in refs], to_image(fill)
