"""Building a `RunConfig` from YAML, a mapping or `--set key=value` overrides, with errors that name the key.

Plugin options (strategy, sampler, task head) are validated against the options dataclass the plugin
declares, once the plugin is known (`build_options`).
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, Mapping

from xft_core.config.schema import ConfigError, RunConfig


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp))


def _short(value: Any, limit: int = 80) -> str:
    """A value for a message: its repr, cut to `limit` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: {value!r} is not valid. Choose one of: {', '.join(map(str, args))}")
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for arg in args:
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{key}: {value!r} matches none of: {', '.join(_type_name(a) for a in args)}")
    if tp is type(None):
        if value is None:
            return None
        raise ConfigError(f"{key}: expected null, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping of {', '.join(f.name for f in dataclasses.fields(tp))}")
        return build_dataclass(tp, value, prefix=key)
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        inner = args[0] if args else Any
        items = [_coerce(v, inner, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {_short(value)}")
        if len(args) != 2 or args == (str, Any):
            return dict(value)
        return {_coerce(k, args[0], f"{key}.{k}"): _coerce(v, args[1], f"{key}.{k}") for k, v in value.items()}
    if tp is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {_short(value)}")
        return list(value)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"{key}: expected an integer, got {value!r}") from None
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError, OverflowError):
            raise ConfigError(f"{key}: expected a number, got {_short(value)}") from None
    if tp is str:
        if not isinstance(value, (str, int, float)):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return str(value)
    return value


def build_dataclass(cls: type, values: Mapping[str, Any], *, prefix: str = "") -> Any:
    """Build dataclass `cls` from a mapping; unknown keys and wrong types are ConfigErrors naming the key."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    dotted = f"{prefix}." if prefix else ""
    unknown = [k for k in values if k not in fields]
    if unknown:
        raise ConfigError(
            f"Unknown key '{dotted}{unknown[0]}'. Valid keys{' of ' + prefix if prefix else ''}: {', '.join(fields)}"
        )
    kwargs = {name: _coerce(values[name], hints[name], f"{dotted}{name}") for name in values}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{prefix or cls.__name__}: {exc}") from exc


def parse_overrides(pairs: list[str] | None) -> dict[str, Any]:
    """`["training.max_steps=10", "strategy_options.r=4"]` -> nested dict; values parsed as YAML scalars."""
    import yaml

    nested: dict[str, Any] = {}
    for pair in pairs or ():
        if "=" not in pair:
            raise ConfigError(f"--set {pair!r}: expected key=value, for example --set training.max_steps=50")
        key, raw = pair.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {pair!r}: the value is not valid YAML ({_yaml_problem(exc)}). "
                              "Quote it to pass it as a string, for example --set 'name=\"a: b\"'") from None
        except RecursionError:
            raise ConfigError(f"--set {_short(pair)}: the value is nested too deeply") from None
        node = nested
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(f"--set {pair!r}: '{key.strip()}' is not a config key (dotted names, "
                              "for example training.max_steps)")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {pair!r}: '{part}' is already set to a scalar")
        node[parts[-1]] = value
    return nested


def _yaml_problem(exc: Exception) -> str:
    problem = str(getattr(exc, "problem", None) or exc).strip()
    mark = getattr(exc, "problem_mark", None)
    return f"{problem} at column {mark.column + 1}" if mark is not None else problem


def deep_merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config(source: str | Path | Mapping[str, Any] | RunConfig, overrides: Mapping[str, Any] | None = None) -> RunConfig:
    """A RunConfig from a YAML path, a mapping or an existing RunConfig, with nested overrides applied.

    Relative data paths in a YAML file are taken relative to the file's folder."""
    import yaml

    if isinstance(source, RunConfig):
        raw: dict[str, Any] = source.to_dict()
        where = "config"
    elif isinstance(source, Mapping):
        raw = dict(source)
        where = "config"
    else:
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"Config file not found: {path}")
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8-sig")) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f" line {mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"{path}{line}: not valid YAML: {getattr(exc, 'problem', None) or exc}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at byte {exc.start}); "
                              "save the config as UTF-8") from None
        except RecursionError:
            raise ConfigError(f"{path}: not valid YAML: nested too deeply") from None
        except OSError as exc:
            raise ConfigError(f"{path}: cannot be read ({exc.strerror or exc})") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of keys (name, model, data, ...)")
        where = str(path)
        data = raw.get("data")
        if isinstance(data, dict):
            try:
                raw["data"] = _relative_to(path.parent, data)
            except ConfigError as exc:
                raise ConfigError(f"{path}: {exc}") from None
    if overrides:
        raw = deep_merge(raw, overrides)
    if "data" not in raw:
        raise ConfigError(f"{where}: missing required key 'data' (for example data: {{path: data/}})")
    try:
        return build_dataclass(RunConfig, raw)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def is_uri(value: str) -> bool:
    """`hf://org/name`, `hub:org/name`: a reference a data source reads, not a path (a drive letter is one character)."""
    return re.match(r"^[A-Za-z][A-Za-z0-9+.-]+:", value) is not None


def _relative_to(folder: Path, data: dict[str, Any]) -> dict[str, Any]:
    """`data.path` and `data.files` of a YAML file, relative paths taken from the file's folder."""
    data = dict(data)

    def resolve(value: Any, key: str) -> Any:
        if not isinstance(value, str) or not value or Path(value).is_absolute() or is_uri(value):
            return value
        try:
            return str((folder / value).resolve())
        except (OSError, ValueError, RuntimeError) as exc:  # a NUL byte, a symlink loop
            raise ConfigError(f"{key}: {_short(value)} is not a usable path ({exc})") from None

    if "path" in data:
        data["path"] = resolve(data["path"], "data.path")
    if isinstance(data.get("best_sources"), dict) and "ranking" in data["best_sources"]:
        data["best_sources"] = {**data["best_sources"],
                                "ranking": resolve(data["best_sources"]["ranking"], "data.best_sources.ranking")}
    if isinstance(data.get("files"), dict):
        data["files"] = {split: {lang: resolve(f, f"data.files.{split}.{lang}") for lang, f in by_language.items()}
                         if isinstance(by_language, dict) else by_language
                         for split, by_language in data["files"].items()}
    return data


def save_config(config: RunConfig, path: Path) -> None:
    import yaml

    from xft_core.util.files import atomic_write_text

    raw = config.to_dict()
    data = raw["data"]  # absolute, so the copy in the run folder finds the same data wherever it is loaded from
    if data["path"] and not is_uri(data["path"]):
        data["path"] = str(Path(data["path"]).resolve())
    data["files"] = {split: {lang: str(Path(f).resolve()) if isinstance(f, str) else f for lang, f in by.items()}
                     for split, by in data["files"].items()}
    atomic_write_text(path, yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))


def build_options(options_cls: type, values: Mapping[str, Any], *, key: str) -> Any:
    """Validate plugin options against the plugin's options dataclass."""
    return build_dataclass(options_cls, values or {}, prefix=key)


# RoBERTa-style models number positions from pad_token_id + 1, so their table holds that many rows more than tokens fit
_OFFSET_POSITIONS = {"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "roberta-prelayernorm", "xmod", "data2vec-text",
                     "longformer", "mpnet"}


def position_limit(model_config: Any) -> int | None:
    """The most tokens a model takes in one sequence, from `max_position_embeddings` of its config (or of its
    `text_config`); None when the config has no such limit (relative positions, as in T5)."""
    for part in (model_config, getattr(model_config, "text_config", None)):
        positions = getattr(part, "max_position_embeddings", None)
        if isinstance(positions, int) and not isinstance(positions, bool) and positions > 0:
            if getattr(part, "model_type", "") in _OFFSET_POSITIONS:
                positions -= (getattr(part, "pad_token_id", None) or 0) + 1
            return positions
    return None


class ConfigWarning(UserWarning):
    """A config value that works, but perhaps not as meant (the CLI prints it as a `warning:` line)."""


def rotary_positions(model_config: Any) -> bool:
    """Whether the model places tokens by rotary embeddings (RoPE: Llama, Gemma, Qwen), which have no table to run
    past: beyond the trained length they still run, only worse."""
    parts = (model_config, getattr(model_config, "text_config", None))
    return any(hasattr(part, name) for part in parts if part is not None for name in ("rope_parameters", "rope_theta"))


def check_max_length(max_length: int, model_config: Any, *, key: str, model: str = "") -> None:
    """`max_length` tokens against the model's positions: past a learned position table (BERT, XLM-R, GPT-2) the
    model indexes outside it (a crash on CPU, a device assert on GPU), so that is a ConfigError naming `key`; past the
    trained length of a rotary-position model it runs but degrades, so that is a ConfigWarning."""
    limit = position_limit(model_config)
    if limit is None or max_length <= limit:
        return
    message = (f"{key} is {max_length}, but the model{f' {model}' if model else ''} takes at most {limit} tokens "
               f"(max_position_embeddings in its config.json)")
    if rotary_positions(model_config):
        import warnings

        warnings.warn(ConfigWarning(f"{message}: its rotary positions run past that, but the model has never seen them. "
                                    f"Set {key} to {limit} or less unless you mean it"), stacklevel=2)
        return
    raise ConfigError(f"{message}. Set {key} to {limit} or less")
