"""`calibration:` of a run config: after training, each language's label prior stored in the run's packages."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from xft_core.config import RunConfig
from xft_core.data.readers import warn
from xft_core.data.unlabelled import unlabelled_rows


def calibrate_run(config: RunConfig, root: Path, data: Any, head: Any, evaluated: list[str], pm: Any, *,
                  trained: Sequence[str] = (), progress: bool = True) -> dict[str, Any]:
    """`calibration:` of a config, after training: each language's prior stored in the run's packages. Without
    `calibration.languages`, every language with unlabelled text (contextual: also every evaluated one) except the
    `trained` ones: a language the adapter learnt from has the prior training fitted, and its unlabelled text is
    often its own training text."""
    from xft_core.evaluation.calibration import calibrate

    c = config.calibration
    texts = unlabelled_rows(data, config.data, head, list(c.languages) or None, evaluated=evaluated, limit=c.max_rows)
    languages = list(c.languages)
    if not languages:
        found = set(texts) | (set(evaluated) if c.method == "contextual" else set())
        languages = sorted(found - set(trained))
        if not languages:
            warn(f"calibration ({c.method}): no language to calibrate: "
                 + (f"the ones with unlabelled text ({', '.join(sorted(found))}) were all trained on" if found
                    else "no language has unlabelled text") + "; name them in calibration.languages")
            return {"method": c.method, "languages": [], "forward_rows": 0}
    done = calibrate(root, None, languages=languages, method=c.method, texts=texts, pm=pm, progress=progress)
    calibrated = sorted({lang for calibration in done.packages.values() for lang in calibration.languages})
    return {"method": c.method, "languages": calibrated, "forward_rows": done.forward_rows}
