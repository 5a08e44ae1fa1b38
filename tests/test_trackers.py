"""Experiment tracking (`training.report_to`, plugin xft_trackers): a short run on a tiny model writes TensorBoard
event files and an MLflow file store, read back here with each tool's own reader; names are checked up front."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import tiny_config
from xft_core.config import ConfigError, load_config
from xft_core.hooks import PluginError
from xft_core.hooks.spec import hookspec
from xft_core.training import train

pytest.importorskip("tensorboard")
pytest.importorskip("mlflow")

TRACKER_ENVIRONMENT = ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID", "MLFLOW_TAGS", "MLFLOW_NESTED_RUN",
                       "MLFLOW_ALLOW_FILE_STORE", "WANDB_MODE", "WANDB_API_KEY", "WANDB_DIR")


@pytest.fixture
def local_trackers(monkeypatch, pm):
    """No tracker settings from the environment (and every change undone after the test); MLflow's process-wide
    tracking URI restored; the plugin registered on the fresh manager."""
    import mlflow.tracking._tracking_service.utils as mlflow_uri

    import xft_trackers
    import xft_trackers.trackers

    for name in TRACKER_ENVIRONMENT:
        monkeypatch.setenv(name, "")  # records the value to restore, then
        monkeypatch.delenv(name)  # the test runs without it
    monkeypatch.setattr(mlflow_uri, "_tracking_uri", None)
    monkeypatch.setattr(xft_trackers.trackers, "_mlflow_uri", None)
    pm.register(xft_trackers, name="xft_trackers")
    return pm


def scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of a TensorBoard log folder as (step, value) pairs, read with TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def text(folder: Path, tag: str) -> str:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"tensors": 0})
    events.Reload()
    return events.Tensors(f"{tag}/text_summary")[-1].tensor_proto.string_val[0].decode()


def test_a_short_run_writes_tensorboard_events_and_an_mlflow_file_store(tiny_model, sentiment_data, tmp_path, local_trackers):
    from mlflow.tracking import MlflowClient

    config = tiny_config(tiny_model("bert"), sentiment_data, tmp_path, name="tracked",
                         training={"max_steps": 4, "eval_every": 2, "log_every": 2, "report_to": ["tensorboard", "mlflow"]})
    run = train(config, pm=local_trackers, progress=False)
    logged = [r for r in map(json.loads, run.paths.metrics.read_text().splitlines()) if "loss" in r]
    assert [r["step"] for r in logged] == [2, 4]
    trackers = run.paths.root / "trackers"

    board = scalars(trackers / "tracked")
    assert [step for step, _ in board["train/loss"]] == [2, 4]
    assert [v for _, v in board["train/loss"]] == pytest.approx([r["loss"] for r in logged], rel=1e-6)
    assert [step for step, _ in board["eval/de/macro_f1"]] == [2, 4]
    assert board["eval/de/macro_f1"][-1][1] == pytest.approx(run.metrics["de"]["macro_f1"], rel=1e-6)
    mean = sum(run.metrics[lang]["accuracy"] for lang in run.metrics) / len(run.metrics)
    assert board["eval/mean/accuracy"][-1][1] == pytest.approx(mean, rel=1e-6)
    assert {"train/lr", "train/examples_per_second", "train/examples_seen/ru", "final/en/accuracy",
            "summary/trainable_parameters"} <= set(board)
    assert "| ru |" in text(trackers / "tracked", "dev_metrics")

    client = MlflowClient(tracking_uri=(trackers / "mlruns").resolve().as_uri())
    experiment = client.get_experiment_by_name("tracked")
    (found,) = client.search_runs([experiment.experiment_id])
    assert found.info.status == "FINISHED" and found.info.run_name == "tracked"
    assert found.data.params["training.learning_rate"] == "0.005"
    assert found.data.params["strategy_options.r"] == "4"
    assert found.data.params["training.report_to"] == '["tensorboard", "mlflow"]'
    assert found.data.metrics["eval/de/macro_f1"] == pytest.approx(run.metrics["de"]["macro_f1"])
    history = client.get_metric_history(found.info.run_id, "train/loss")
    assert [m.step for m in history] == [2, 4]
    assert [m.value for m in history] == pytest.approx([r["loss"] for r in logged])
    artifacts = Path(client.download_artifacts(found.info.run_id, "", str(tmp_path / "artifacts")))
    assert json.loads((artifacts / "dev_metrics.json").read_text())["metrics"] == run.metrics
    assert json.loads((artifacts / "run_summary.json").read_text())["steps"] == 4


def test_without_trackers_nothing_is_written(tiny_model, sentiment_data, tmp_path, local_trackers):
    run = train(tiny_config(tiny_model("bert"), sentiment_data, tmp_path, training={"max_steps": 2}), pm=local_trackers,
                progress=False)
    assert run.accelerator.log_with == [] and run.accelerator.trackers == []
    assert not (run.paths.root / "trackers").exists()
    assert not list(tmp_path.glob("**/mlruns")) and not list(tmp_path.glob("**/*tfevents*"))


def test_an_unknown_tracker_names_the_valid_ones(tiny_model, sentiment_data, tmp_path):
    config = tiny_config(tiny_model("bert"), sentiment_data, tmp_path, training={"report_to": ["tensorbord"]})
    with pytest.raises(ConfigError, match=r"training\.report_to: unknown tracker 'tensorbord'.*mlflow.*tensorboard.*wandb"):
        load_config(config)
    assert load_config(config, {"training": {"report_to": "tensorboard,mlflow"}}).training.report_to == ["tensorboard", "mlflow"]


@pytest.mark.parametrize("tracker, package", [("wandb", "wandb"), ("trackio", "trackio"), ("mlflow", "mlflow-skinny")])
def test_a_tracker_not_installed_says_what_to_install(tracker, package, tiny_model, sentiment_data, tmp_path, local_trackers,
                                                      monkeypatch):
    import accelerate.utils

    monkeypatch.setattr(accelerate.utils, f"is_{tracker}_available", lambda: False)
    config = load_config(tiny_config(tiny_model("bert"), sentiment_data, tmp_path, training={"report_to": [tracker]}))
    with pytest.raises(PluginError, match=rf"'{tracker}' \(config key: training.report_to\) needs the package {package}.*"
                                          rf"pip install {package}"):
        local_trackers.hook.xft_configure.call_historic(kwargs=dict(config=config))


def matrix() -> dict:
    """A transfer matrix as `TransferMatrix.to_dict()` writes it (report/transfer.json)."""
    cells = {"en (zero-shot)": {"en": 0.9, "de": 0.6}, "per-language": {"en": 0.9, "de": 0.8}}
    return {"task": "sequence-classification", "split": "test", "languages": ["en", "de"], "metrics": ["macro_f1"],
            "primary": "macro_f1", "rows": [{"label": label, "cells": {lang: {"macro_f1": v} for lang, v in row.items()}}
                                            for label, row in cells.items()],
            "summary": {"macro_f1": {"en (zero-shot)": {"transfer": 0.6, "vs_zero_shot": None},
                                     "per-language": {"transfer": 0.8, "vs_zero_shot": 0.2}}}}


def test_a_transfer_matrix_is_logged_through_the_eval_hook(tmp_path, local_trackers):
    """`xft eval --report-to` calls `xft_after_evaluate` (declared here as the engine would declare it)."""
    from mlflow.tracking import MlflowClient

    class EvalSpec:
        @hookspec
        def xft_after_evaluate(self, matrix, report_to, run_dir):
            """After `xft eval` wrote its reports."""

    local_trackers.add_hookspecs(EvalSpec)
    run_dir = tmp_path / "en-only"
    local_trackers.hook.xft_after_evaluate(matrix=matrix(), report_to=["tensorboard", "mlflow"], run_dir=run_dir)

    board = scalars(run_dir / "trackers" / "en-only")
    assert board["transfer/test/en_zero-shot/de/macro_f1"] == [(0, pytest.approx(0.6))]
    assert board["transfer/test/per-language/vs_zero_shot"] == [(0, pytest.approx(0.2))]
    assert "| per-language | 0.9000 | 0.8000 |" in text(run_dir / "trackers" / "en-only", "transfer_matrix_test")
    client = MlflowClient(tracking_uri=(run_dir / "trackers" / "mlruns").resolve().as_uri())
    (found,) = client.search_runs([client.get_experiment_by_name("en-only").experiment_id])
    assert found.info.run_name == "en-only-transfer-test" and found.data.params["split"] == "test"
    assert found.data.metrics["transfer/test/per-language/de/macro_f1"] == pytest.approx(0.8)


def test_config_values_become_flat_parameters():
    from xft_trackers.trackers import flat_params

    params = flat_params({"training": {"learning_rate": 5e-3, "report_to": ["tensorboard"], "cpu": False},
                          "task_options": {"label words?": {"de": "gut"}}, "data": {"rows": {"train": {"en": ["x" * 600]}}},
                          "init_from": "", "empty": {}})
    assert params == {"training.learning_rate": 5e-3, "training.report_to": '["tensorboard"]', "training.cpu": False,
                      "task_options.label_words.de": "gut", "data.rows.train.en": "<604 characters>", "init_from": "",
                      "empty": "{}"}


def test_report_to_with_the_tracking_plugin_blocked_warns_before_training(tiny_model, sentiment_data, tmp_path, pm):
    """Without xft_trackers (blocked, or never installed) `report_to` used to validate, train and write nothing."""
    from xft_core.config.load import ConfigWarning

    assert not pm.has_plugin("xft_trackers")
    config = tiny_config(tiny_model("bert"), sentiment_data, tmp_path, training={"max_steps": 1, "report_to": ["tensorboard"]})
    with pytest.warns(ConfigWarning, match=r"training.report_to: tensorboard: no plugin started a tracker.*XFT_BLOCK_PLUGINS"):
        train(config, pm=pm, progress=False)


def test_report_to_with_the_plugin_warns_nothing(tiny_model, sentiment_data, tmp_path, local_trackers):
    import warnings

    config = tiny_config(tiny_model("bert"), sentiment_data, tmp_path, training={"max_steps": 1, "report_to": ["tensorboard"]})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(config, pm=local_trackers, progress=False)
    assert not [w for w in caught if "no plugin started a tracker" in str(w.message)]
