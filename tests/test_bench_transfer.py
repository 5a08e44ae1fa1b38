"""`xft bench transfer`: the suite's splits, its quick mode end to end, resuming, and the report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
needs_shared = pytest.mark.skipif(not (SHARED / "sib200").is_dir(), reason="needs ../shared/data")


@needs_shared
def test_xnli_split_keeps_test_premises_out_of_training(tmp_path):
    from xft_core.bench.tasks import TASKS, XNLI_TRAIN_ROWS, task_data

    task = TASKS["xnli"]
    folder = task_data(task, SHARED, tmp_path)
    assert XNLI_TRAIN_ROWS % 3 == 0, "premise groups (3 lines each) are never cut"
    source = [json.loads(line) for line in (SHARED / "nli" / "de.dev.jsonl").read_text(encoding="utf-8").splitlines()]
    train = [json.loads(line) for line in (folder / "de.train.jsonl").read_text(encoding="utf-8").splitlines()]
    test = [json.loads(line) for line in (folder / "de.test.jsonl").read_text(encoding="utf-8").splitlines()]
    assert train == source[:XNLI_TRAIN_ROWS] and len(test) == 498 and all(row in source[1990:] for row in test)
    assert not {r["text"] for r in train} & {r["text"] for r in test}, "no premise in both"
    english = [json.loads(line) for line in (folder / "en.test.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["label"] for r in english] == [r["label"] for r in test], "the same lines in every language"
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{lang}.{split}.jsonl" for lang in task.languages
                                                               for split in ("train", "test"))
    assert task_data(TASKS["sib200"], SHARED, tmp_path) == SHARED / "sib200", "shipped splits are read in place"


@needs_shared
def test_evaluation_rows_are_a_spread_sample_that_stays_parallel(tmp_path):
    """SIB-200's test files are sorted by topic: a cut to N rows must sample across the file (every topic shows
    up), reproducibly, and take the same lines in every language."""
    from xft_core.bench.tasks import TASKS, task_data

    folder = task_data(TASKS["sib200"], SHARED, tmp_path, eval_rows=50)
    source = [json.loads(line) for line in (SHARED / "sib200" / "deu.test.jsonl").read_text(encoding="utf-8").splitlines()]
    german = [json.loads(line) for line in (folder / "deu.test.jsonl").read_text(encoding="utf-8").splitlines()]
    french = [json.loads(line) for line in (folder / "fra.test.jsonl").read_text(encoding="utf-8").splitlines()]
    english = [json.loads(line) for line in (folder / "eng.test.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(german) == 50 and all(row in source for row in german)
    assert len({r["label"] for r in source[:50]}) < len({r["label"] for r in source}) == len({r["label"] for r in german})
    assert [r["label"] for r in french] == [r["label"] for r in german], "the same lines in every language"
    assert len(english) == len(source), "the source language is evaluated on all its rows unless told otherwise"
    again = task_data(TASKS["sib200"], SHARED, tmp_path / "again", eval_rows=50, source_eval_rows=50)
    assert (again / "deu.test.jsonl").read_bytes() == (folder / "deu.test.jsonl").read_bytes()
    english = [json.loads(line) for line in (again / "eng.test.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["label"] for r in english] == [r["label"] for r in german], "a cut source takes the targets' lines"


@needs_shared
def test_quick_suite_runs_every_recipe_reports_and_resumes(tmp_path, capsys):
    from xft_core.bench.recipes import default_recipes, installed_recipes
    from xft_core.cli.main import main

    out = tmp_path / "suite"
    recipes = [r for r in default_recipes(installed_recipes()) if r not in ("prompt-tuning", "madx")] + ["verbalizer-8shot"]
    command = ["bench", "transfer", "--quick", "--out", str(out), "--no-progress", "--recipes", *recipes]
    assert main(command) == 0, capsys.readouterr().err
    report = json.loads((out / "transfer.json").read_text(encoding="utf-8"))
    assert sorted(report["tasks"]) == ["sib200", "xnli"]
    for task in report["tasks"].values():
        assert list(task["recipes"]) == recipes
        for recipe in task["recipes"].values():
            assert 0 <= recipe["source_mean"] <= 1 and 0 <= recipe["zero_shot_mean"] <= 1
            assert len(recipe["per_language"]) == 1 + len(task["targets"])
        assert task["recipes"]["lora-head"]["zero_shot_vs_baseline"] == 0
    runs = [json.loads(line) for line in (out / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(runs) == 2 * len(recipes) and {r["seed"] for r in runs} == {0}
    wise = next(r for r in runs if r["recipe"] == "verbalizer-wise" and r["task"] == "sib200")
    assert wise["train_seconds"] == 0, "the WiSE-FT recipe evaluates the verbalizer's adapters, no training"
    markdown = (out / "transfer.md").read_text(encoding="utf-8")
    assert "| verbalizer |" in markdown and "vs base (zero-shot)" in markdown
    assert "## sib200 (macro_f1), 4 steps" in markdown and "## xnli (macro_f1), 4 steps" in markdown
    # the quick suite scores 8 lines per target: the report says the ± leaves their sampling out
    assert markdown.count("Each target is scored on the same 8 lines in every target language and every seed") == 2
    assert report["tasks"]["xnli"]["sampling"].startswith("Each target is scored on the same 8 lines")
    assert all(r["steps"] == 4 and r["batch_size"] == 4 for r in runs)

    assert all(r["eval_rows"]["eng" if r["task"] == "sib200" else "en"] == 16 for r in runs), \
        "the source is evaluated on its own number of rows (16 in quick mode), the targets on 8"
    assert all(n == 8 for r in runs for lang, n in r["eval_rows"].items() if lang not in ("eng", "en"))

    stamp = (out / "runs" / "sib200-verbalizer-s0" / "run.json").stat().st_mtime_ns
    assert main(command) == 0
    assert (out / "runs" / "sib200-verbalizer-s0" / "run.json").stat().st_mtime_ns == stamp, "finished runs are kept"
    assert len((out / "results.jsonl").read_text(encoding="utf-8").splitlines()) == len(runs)

    # more source rows asked for: finished runs are re-scored on them from their run folders, never retrained
    assert main([*command, "--source-eval-rows", "24"]) == 0
    assert (out / "runs" / "sib200-verbalizer-s0" / "run.json").stat().st_mtime_ns == stamp, "no run is retrained"
    again = [json.loads(line) for line in (out / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(again) == len(runs)
    for before, after in zip(runs, again):
        source = "eng" if after["task"] == "sib200" else "en"
        assert after["eval_rows"][source] == 24 and after["source_score"] == after["scores"][source]
        assert {k: v for k, v in after["scores"].items() if k != source} == \
            {k: v for k, v in before["scores"].items() if k != source}, "target scores are untouched"
        assert after["train_seconds"] == before["train_seconds"] and after["wall_seconds"] >= before["wall_seconds"]


def test_unknown_recipe_is_named_with_the_choices(tmp_path):
    from xft_core.bench.transfer import Suite, run_suite

    with pytest.raises(ValueError, match="unknown task or recipe: nope.*recipes: lora-head"):
        run_suite(Suite(tasks=["sib200"], recipes=["nope"], seeds=[0], out=tmp_path, data_root=tmp_path))
    with pytest.raises(ValueError, match="'verbalizer-wise' evaluates the adapters of 'verbalizer'"):
        run_suite(Suite(tasks=["sib200"], recipes=["verbalizer-wise"], seeds=[0], out=tmp_path, data_root=tmp_path))


def test_each_task_has_its_own_budget_unless_steps_are_given_and_budgets_never_mix(tmp_path):
    from xft_core.bench.tasks import TASKS
    from xft_core.bench.transfer import Suite, run_suite

    per_task = Suite(tasks=["sib200", "xnli"], recipes=["lora-head"], seeds=[0], out=tmp_path, data_root=tmp_path)
    assert [per_task.steps_for(TASKS[t]) for t in ("sib200", "xnli")] == [TASKS["sib200"].steps, TASKS["xnli"].steps]
    assert TASKS["xnli"].steps > TASKS["sib200"].steps, "NLI needs the longer budget (docs/transfer.md)"
    fixed = Suite(tasks=["sib200", "xnli"], recipes=["lora-head"], seeds=[0], out=tmp_path, data_root=tmp_path, steps=7)
    assert {fixed.steps_for(task) for task in TASKS.values()} == {7}

    # a folder holding runs of another budget: refused before anything trains, naming the file and both budgets
    finished = {"task": "sib200", "recipe": "lora-head", "seed": 0, "steps": 40, "batch_size": 16}
    (tmp_path / "results.jsonl").write_text(json.dumps(finished) + "\n", encoding="utf-8")
    for asked in ({"steps": 300}, {"steps": 40, "batch_size": 8}):
        suite = Suite(tasks=["sib200"], recipes=["verbalizer"], seeds=[1], out=tmp_path, data_root=tmp_path, **asked)
        with pytest.raises(ValueError, match=r"results\.jsonl holds sib200 runs of 40 steps of batch 16; this suite "
                                             rf"asks for {asked['steps']} steps of batch {asked.get('batch_size', 16)}\. "
                                             r"Give another --out"):
            run_suite(suite)
    assert not (tmp_path / "runs").exists(), "nothing ran"


@needs_shared
def test_madx_trains_its_language_adapters_once_with_the_steps_asked_for(tmp_path, capsys):
    from xft_core.cli.main import main

    out = tmp_path / "suite"
    command = ["bench", "transfer", "--quick", "--tasks", "sib200", "--recipes", "lora-head", "madx", "--out", str(out),
               "--no-progress", "--language-adapter-steps", "1"]
    assert main(command) == 0, capsys.readouterr().err
    adapters = out / "runs" / "sib200-language-adapters-1"
    info = json.loads((adapters / "run.json").read_text(encoding="utf-8"))
    assert info["steps"] == 10, "1 step for each of the 10 languages"
    runs = [json.loads(line) for line in (out / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    madx = next(r for r in runs if r["recipe"] == "madx")
    assert madx["resources"] == {"language-adapters-1": str(adapters)} and "resources" not in runs[0]
    config = (out / "runs" / "sib200-madx-s0" / "config.yaml").read_text(encoding="utf-8")
    assert str(adapters) in config, "the task adapter is trained over those language adapters"



def test_recipes_come_from_plugins_and_bad_ones_are_named(tmp_path):
    """The suite names no recipe: a plugin defined here contributes them; a second baseline, an unknown evaluation
    option and a fragment without a strategy are errors naming the recipe."""
    from xft_core.bench.recipes import baseline_of, check_recipe, installed_recipes, recipe_task, run_config
    from xft_core.bench.tasks import TASKS
    from xft_core.hooks import PluginError, RecipeSpec, hookimpl
    from xft_core.testing import plugin_manager

    class Mine:
        @hookimpl
        def xft_transfer_recipes(self):
            yield RecipeSpec(name="mine", description="d", config=lambda task: {"task": "t", "strategy": "s",
                                                                               "training": {"learning_rate": 1e-3}})
            yield RecipeSpec(name="half", description="d", config=lambda task: {}, derived_from="mine",
                             evaluation={"scale": 0.5, "temperature": 2})
            yield RecipeSpec(name="also-base", description="d", config=lambda task: {"task": "t"}, baseline=True)

    pm = plugin_manager(Mine())
    recipes = installed_recipes(pm)
    assert {"mine", "half", "also-base", "lora-head", "verbalizer"} <= set(recipes)
    with pytest.raises(PluginError, match="Several transfer recipes claim to be the suite's baseline: lora-head, also-base"):
        baseline_of(recipes)
    with pytest.raises(PluginError, match="'half': unknown evaluation option\\(s\\) temperature. Valid: scale"):
        check_recipe(recipes["half"], recipes)
    task = TASKS["sib200"]
    info = recipe_task(task, steps=40, batch_size=16, unlabelled=False)
    base = dict(name="n", out=str(tmp_path), model="m", data="d", seed=3, steps=40, batch_size=16)
    config = run_config(recipes["mine"], task, info, **base)
    assert config["training"]["learning_rate"] == 1e-3 and config["training"]["max_steps"] == 40, "merged key by key"
    assert config["training"]["seed"] == 3 and config["strategy"] == "s"
    with pytest.raises(PluginError, match="'also-base' gives no strategy for task sib200"):
        run_config(recipes["also-base"], task, info, **base)


@needs_shared
def test_unlabelled_text_of_the_parallel_sets_is_disjoint_from_training_and_evaluation(tmp_path):
    """On SIB-200 and XNLI (parallel: line i is the same item in every language) a target's unlabelled text is never
    a translation of a training or evaluation row; it carries no label."""
    from xft_core.bench.tasks import TASKS, task_data

    for name, source_split in (("sib200", "train"), ("xnli", "train")):
        task = TASKS[name]
        folder = task_data(task, SHARED, tmp_path / name, unlabelled_rows=0)
        english = {s: [json.loads(x) for x in (folder / f"{task.source}.{s}.jsonl").read_text(encoding="utf-8").splitlines()]
                   for s in (source_split, "test")}
        shipped = SHARED / task.folder
        target = task.targets[0]
        parallel = {}  # the target's line for every English line of the shipped files (same index = same item)
        for split in ("train", "dev", "test"):
            if (shipped / f"{target}.{split}.jsonl").is_file():
                ours = (shipped / f"{target}.{split}.jsonl").read_text(encoding="utf-8").splitlines()
                theirs = (shipped / f"{task.source}.{split}.jsonl").read_text(encoding="utf-8").splitlines()
                parallel.update({json.loads(o)["text"] + json.loads(o).get("text_pair", ""):
                                 json.loads(t)["text"] + json.loads(t).get("text_pair", "") for o, t in zip(ours, theirs)})
        unlabelled = [json.loads(x) for x in (folder / f"{target}.unlabelled.jsonl").read_text(encoding="utf-8").splitlines()]
        assert len(unlabelled) >= 99 and all("label" not in row for row in unlabelled)
        used = {row["text"] + row.get("text_pair", "") for rows in english.values() for row in rows}
        translations = [parallel[row["text"] + row.get("text_pair", "")] for row in unlabelled]
        assert not set(translations) & used, f"{name}: an unlabelled {target} row translates a training or test row"


def test_a_torn_last_line_of_results_is_dropped_with_a_warning_and_other_bad_lines_are_named(tmp_path):
    """A suite killed mid-append left a cut-off last line: the next run stopped on a JSONDecodeError naming no file."""
    from xft_core.bench.transfer import _read_results
    from xft_core.data.readers import DataWarning
    from xft_core.util.errors import UserError

    log = tmp_path / "results.jsonl"
    done = {"task": "sib200", "recipe": "lora-head", "seed": 0, "steps": 40, "batch_size": 16}
    log.write_text(json.dumps(done) + "\n" + json.dumps({**done, "seed": 1})[:25], encoding="utf-8")
    with pytest.warns(DataWarning, match=rf"{log} line 2: cut off"):
        assert _read_results(log) == [done]
    assert log.read_text(encoding="utf-8") == json.dumps(done) + "\n", "the next record starts on a line of its own"
    log.write_text("{not json\n" + json.dumps(done) + "\n", encoding="utf-8")
    with pytest.raises(UserError, match=rf"{log} line 1: not a JSON object"):
        _read_results(log)
    log.write_text(json.dumps([done]) + "\n" + json.dumps(done) + "\n", encoding="utf-8")  # JSON, but not an object
    with pytest.raises(UserError, match=rf"{log} line 1: not a JSON object \(a finished run's record\)"):
        _read_results(log)


def test_the_metrics_log_skips_a_torn_last_line_without_touching_the_file_and_names_a_bad_one(tmp_path):
    from xft_core.util.errors import UserError
    from xft_core.util.runfiles import read_metrics_log

    log = tmp_path / "metrics.jsonl"
    text = "".join(json.dumps({"step": s, "loss": 1.0 / s}) + "\n" for s in (1, 2, 3)) + '{"step": 4, "lo'
    log.write_text(text, encoding="utf-8")
    assert [r["step"] for r in read_metrics_log(log)] == [1, 2, 3]
    assert [r["step"] for r in read_metrics_log(log, up_to_step=2)] == [1, 2]
    assert log.read_text(encoding="utf-8") == text, "a run resuming appends after it: the file is left as it is"
    log.write_text('{"step": 1}\n[1, 2]\n{"step": 2}\n', encoding="utf-8")
    with pytest.raises(UserError, match=rf"{log} line 2: not a JSON object \(a logged step or evaluation\)"):
        read_metrics_log(log)


def test_out_that_is_a_training_run_folder_is_refused(tmp_path):
    from xft_core.bench.transfer import Suite, run_suite
    from xft_core.util.errors import UserError

    (tmp_path / "config.yaml").write_text("name: mine\n")
    (tmp_path / "metrics.jsonl").write_text("")
    suite = Suite(tasks=["sib200"], recipes=["lora-head"], seeds=[0], out=tmp_path, data_root=tmp_path)
    with pytest.raises(UserError, match=rf"--out {tmp_path} is a training run folder"):
        run_suite(suite)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml", "metrics.jsonl"]



@needs_shared
def test_a_self_training_recipe_is_taught_by_its_parents_run_which_runs_first_and_stays_as_trained(tmp_path, capsys):
    from xft_core.cli.main import main

    out = tmp_path / "suite"
    command = ["bench", "transfer", "--quick", "--tasks", "xnli", "--out", str(out), "--no-progress", "--recipes"]
    assert main([*command, "verbalizer-st"]) == 2
    assert "recipe 'verbalizer-st' self-trains from the run of 'verbalizer': add it to the recipes" in capsys.readouterr().err
    # asked for children first: the suite still runs the teacher's recipe, then the student, then its calibration
    assert main([*command, "verbalizer-st-dc", "verbalizer-st", "verbalizer"]) == 0, capsys.readouterr().err
    runs = [json.loads(line) for line in (out / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["recipe"] for r in runs] == ["verbalizer", "verbalizer-st", "verbalizer-st-dc"]
    teacher, student = out / "runs" / "xnli-verbalizer-s0", out / "runs" / "xnli-verbalizer-st-s0"
    copied = student / "rounds" / "round-0"
    for package in (teacher / "adapters").iterdir():
        for file in package.iterdir():
            assert (copied / "adapters" / package.name / file.name).read_bytes() == file.read_bytes(), file.name
    assert not list(teacher.rglob("calibration.json")), "the teacher's run is evaluated as trained, uncalibrated"
    info = json.loads((student / "run.json").read_text(encoding="utf-8"))
    assert [r["steps"] for r in info["self_training"]["rounds"]] == [4, 4], "round 0 is the teacher's run"
    assert runs[1]["extra_train_steps"] == 4 and runs[1]["unlabelled_forward_rows"] > 0
    assert runs[2]["unlabelled_forward_rows"] == runs[1]["unlabelled_forward_rows"] + 20 * 14, "+ 20 rows per target"


def test_a_teacher_from_recipe_is_checked_and_gets_its_teacher_in_self_training(tmp_path):
    from xft_core.bench.recipes import check_recipe, depth, recipe_task, run_config
    from xft_core.bench.tasks import TASKS
    from xft_core.hooks import PluginError, RecipeSpec

    def fragment(task):
        return {"task": "t", "strategy": "s", "self_training": {"rounds": 1, "steps": 3}}

    plain = RecipeSpec(name="plain", description="d", config=lambda task: {"task": "t", "strategy": "s"})
    student = RecipeSpec(name="student", description="d", config=fragment, teacher_from="plain")
    calibrated = RecipeSpec(name="calibrated", description="d", config=fragment, derived_from="student")
    known = {spec.name: spec for spec in (plain, student, calibrated)}
    assert [depth(known[n], known) for n in ("plain", "student", "calibrated")] == [0, 1, 2]
    check_recipe(student, known)
    with pytest.raises(PluginError, match="'orphan' self-trains from the run of 'gone', which no installed plugin"):
        check_recipe(RecipeSpec(name="orphan", description="d", config=fragment, teacher_from="gone"), known)
    with pytest.raises(PluginError, match="'both' gives both derived_from .* and teacher_from"):
        check_recipe(RecipeSpec(name="both", description="d", config=fragment, teacher_from="plain",
                                derived_from="plain"), known)
    loop = {"a": RecipeSpec(name="a", description="d", config=fragment, teacher_from="b"),
            "b": RecipeSpec(name="b", description="d", config=fragment, teacher_from="a")}
    with pytest.raises(PluginError, match="a -> b -> a need each other's runs in a circle"):
        depth(loop["a"], loop)

    task = TASKS["xnli"]
    info = recipe_task(task, steps=40, batch_size=16, unlabelled=True)
    base = dict(name="n", out=str(tmp_path), model="m", data="d", seed=0, steps=40, batch_size=16)
    config = run_config(student, task, info, teacher="runs/xnli-plain-s0", **base)
    assert config["self_training"] == {"rounds": 1, "steps": 3, "teacher": "runs/xnli-plain-s0"}
    with pytest.raises(PluginError, match=r"'plain' is taught by the run runs/x \(teacher_from\) but its config does not"):
        run_config(plain, task, info, teacher="runs/x", **base)


def test_sampling_note_says_what_the_spread_leaves_out():
    from xft_core.bench.report import sampling_note
    from xft_core.bench.tasks import TASKS

    assert sampling_note(TASKS["xnli"], 0) == "", "every row evaluated: nothing to say"
    parallel = sampling_note(TASKS["sib200"], 50)
    assert "the same 50 lines in every target language and every seed" in parallel and "rests on 50 items" in parallel
    own = sampling_note(TASKS["udpos"], 50)
    assert "the same 50 lines of each target language for every seed" in own and "rests on" not in own
    assert all("benchmarks/rescore.py" in note for note in (parallel, own))


def test_every_installed_recipe_builds_a_valid_run_config_for_each_task_it_applies_to():
    """A recipe's fragment is only read when the suite reaches its runs: a misspelt option (say a teacher's
    calibration 'batchlog') would fail hours into a suite. Every installed recipe, on every suite task of its kinds,
    must give a config the loader accepts and whose plugins and options resolve; and a bad value is caught here."""
    from xft_core.bench.recipes import check_recipe, installed_recipes, recipe_task, run_config
    from xft_core.bench.tasks import TASKS
    from xft_core.config import ConfigError
    from xft_core.config.load import load_config
    from xft_core.hooks.manager import get_plugin_manager
    from xft_core.training.prepare import resolve_plugins

    pm = get_plugin_manager()
    recipes = installed_recipes(pm)
    checked = {}
    for spec in recipes.values():
        check_recipe(spec, recipes)
        for task in TASKS.values():
            if task.kind not in spec.kinds:
                continue
            plain = recipe_task(task, steps=8, batch_size=4, unlabelled=True)
            resources = {name: f"prepared/{name}" for name in (spec.prepare(plain) if spec.prepare else {})}
            info = recipe_task(task, steps=8, batch_size=4, unlabelled=True, resources=resources)
            config = run_config(spec, task, info, teacher="runs/teacher" if spec.teacher_from else "", name="n",
                                out="runs", model="m", data="data", seed=0, steps=8, batch_size=4)
            loaded = load_config(config)
            resolve_plugins(loaded, pm)
            checked[spec.name, task.name] = loaded
    assert checked["verbalizer-stbl", "xnli"].self_training.calibration == "batch-log"
    assert checked["verbalizer-stbl", "xnli"].self_training.teacher == "runs/teacher"
    assert checked["lora-head-st", "udpos"].self_training.rounds == 1
    misspelt = {**config, "self_training": {"rounds": 1, "calibration": "batchlog"}}  # the last recipe's config
    with pytest.raises(ConfigError, match="self_training.calibration: 'batchlog' is not valid. Choose one of: none, batch"):
        load_config(misspelt)
