"""Watching a run live: every step's numbers also go to TensorBoard event files (the run's
`tensorboard/` folder: `tensorboard --logdir results/{run_name}/train`) and, when the config names
a project, to Weights & Biases. log.jsonl stays the record the report reads; these are views."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ..errors import RicepoError

TENSORBOARD_DIR = "tensorboard"


class Watch:
    def __init__(
        self, out_dir: Path, tensorboard: bool, wandb_project: str | None, run_name: str, config: dict, start_step: int, enabled: bool = True
    ):
        """`start_step`: the step a resumed run starts from: TensorBoard drops what an earlier
        attempt wrote after it (its purge_step), so a resumed curve has no doubled points."""
        self.tb, self.wandb = None, None
        if not enabled:
            return
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(log_dir=str(out_dir / TENSORBOARD_DIR), purge_step=start_step or None)
        if wandb_project:
            try:
                import wandb
            except ImportError:
                raise RicepoError(
                    f"train.wandb_project is {wandb_project!r} but wandb is not installed (pip install wandb, or set it to null)"
                ) from None
            # one W&B run per results folder, continued when the job resumes
            run_id = hashlib.sha1(str(out_dir.resolve()).encode()).hexdigest()[:16]
            self.wandb = wandb.init(project=wandb_project, name=run_name, id=run_id, resume="allow", config=config)

    def write(self, step: int, record: dict, prefix: str = "train") -> None:
        """The record's numbers at `step`, as `<prefix>/<key>`."""
        numbers = {f"{prefix}/{k}": float(v) for k, v in record.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "step"}
        if self.tb:
            for key, value in numbers.items():
                self.tb.add_scalar(key, value, step)
            self.tb.flush()
        if self.wandb:
            self.wandb.log(numbers, step=step)

    def close(self) -> None:
        if self.tb:
            self.tb.close()
        if self.wandb:
            self.wandb.finish()
