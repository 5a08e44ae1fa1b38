"""`calibration:` of a run config: after training, each language's label prior stored in the run's packages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xft_core.config import RunConfig
from xft_core.data.unlabelled import unlabelled_rows


def calibrate_run(config: RunConfig, root: Path, data: Any, head: Any, evaluated: list[str], pm: Any, *,
                  progress: bool = True) -> dict[str, Any]:
    """`calibration:` of a config, after training: each language's prior stored in the run's packages."""
    from xft_core.evaluation.calibration import calibrate

    c = config.calibration
    languages = list(c.languages) or None
    texts = unlabelled_rows(data, config.data, head, languages, evaluated=evaluated, limit=c.max_rows)
    if c.method == "contextual" and languages is None:
        languages = sorted(set(texts) | set(evaluated))
    done = calibrate(root, None, languages=languages, method=c.method, texts=texts, pm=pm, progress=progress)
    calibrated = sorted({lang for calibration in done.packages.values() for lang in calibration.languages})
    return {"method": c.method, "languages": calibrated, "forward_rows": done.forward_rows}
