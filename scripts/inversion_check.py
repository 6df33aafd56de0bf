"""How well DDIM inversion works on the bundled model, and what ditto_draft's start looks like.

Prints JSON. For each inversion step count: the round trip x_T -> DDIM sample -> invert_ddim,
as the MSE against the original x_T and the std of the recovered noise (1 for unit Gaussian
noise). Then, for the first painting targets of the control eval, the std of the inverted
naive-masking draft (all frames, and the matched frames ditto_draft keeps) and the masked loss
of the start ditto_draft optimizes from, against x_T's own.

    python scripts/inversion_check.py --data data/full [--task outpaint] [--targets 3]
"""

from __future__ import annotations

import argparse
import json
import sys

import torch


def main() -> int:
    from dittomusic.control.methods import DRAFT_INVERT_STEPS, Settings, draft_start
    from dittomusic.errors import DittoError
    from dittomusic.eval.control import PAINT_SETTINGS, reference_clips, build_targets
    from dittomusic.generate import Pipeline
    from dittomusic.sampling import invert_ddim

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="a dataset built by `dittomusic data build`")
    ap.add_argument("--task", default="outpaint", choices=sorted(PAINT_SETTINGS))
    ap.add_argument("--targets", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    try:
        pipe = Pipeline()
        F = pipe.model.cfg.clip_frames
        refs, tags, _, _ = reference_clips(a.data, a.targets, a.seed)
        ctrls, _ = build_targets(a.task, a.targets, F, refs, pipe.mel_cfg)
        x_T = pipe.noise(a.targets, F, a.seed)
        s = Settings()
        out = {"round_trip": {}, "draft": []}
        with torch.no_grad():
            fn = pipe.model_fn(tags[0], 1, s.guidance)
            for steps in (20, DRAFT_INVERT_STEPS):
                x0 = pipe.sample(x_T[:1], tags[0], steps=steps, guidance=s.guidance)
                back = invert_ddim(fn, x0, pipe.schedule, steps, prediction=pipe.backend.prediction)
                out["round_trip"][str(steps)] = {"x_T_mse": round((back - x_T[:1]).square().mean().item(), 4),
                                                 "std": round(back.std().item(), 3)}
            for b, c in enumerate(ctrls):
                x = x_T[b:b + 1]
                start, inv = draft_start(pipe.backend, c, pipe.cond([tags[b]], 1), x, s)
                idx = c.masks.gen_idx

                def loss(z, b=b):
                    return round(float(c.loss(pipe.sample(z, [tags[b]], steps=s.steps, guidance=s.guidance))), 4)

                out["draft"].append({"target": b, "inverted_std": round(inv.std().item(), 3),
                                     "inverted_matched_std": round(inv[..., idx].std().item(), 3),
                                     "loss_from_x_T": loss(x), "loss_from_draft_start": loss(start),
                                     "loss_from_whole_inversion": loss(inv)})
    except DittoError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
