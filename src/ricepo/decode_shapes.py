"""The shapes the static decode step is compiled for (`agent/decode_step.py`), and so the shape of the KV
storage it decodes in: `ricepo plan` prices the rollout's KV cache at these sizes."""


def rows_bucket(n: int) -> int:
    """Rows a static step computes for `n` running rows: the next power of two."""
    return 1 << max(0, n - 1).bit_length()


def columns_bucket(c: int) -> int:
    """Columns of static storage holding `c`: four sizes per doubling from 64 on, so a growing
    context recompiles a few times and attention spends at most a quarter more on masked columns."""
    if c <= 64:
        return 64
    grain = 1 << (c.bit_length() - 3)
    return -(-c // grain) * grain
