"""``gl.toml``: the models a repository publishes, their variants, and how to publish them.

:func:`load_config` reads the file (a file that is not TOML is an
:class:`~gl_plugins.errors.InputError`) and checks every key, collecting each
problem as a finding whose message starts with its key path, e.g.
``models.gemma4-turbo.variants.e4b.gguf: file not found``. Paths are relative
to the folder of gl.toml and must stay inside it. The schema is documented in
docs/gl-toml.md.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from gl_plugins.errors import GLError, InputError, read_input
from gl_plugins.findings import Finding
from gl_plugins.modelfile import parse as mfmod
from gl_plugins.publish.names import part_problem, reserved_tag_problem

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_NAME = "gl.toml"
TOP_KEYS = ("publish", "models")
PUBLISH_KEYS = ("host", "namespace", "to", "bundle_dir", "retry_seconds", "insecure")
SHARED_KEYS = ("family", "modelfile", "template", "system", "parameters", "license", "messages")
MODEL_KEYS = ("variants", "description", *SHARED_KEYS)
VARIANT_KEYS = ("tag", "gguf", "build", "description", *SHARED_KEYS)
BUILD_KEYS = ("base", "recipe", "options", "map", "base_type", "imatrix", "guard", "floor")
# build.floor: gl floor's settings (gl_plugins.floor.search.find_floor); the variant is the smallest passing file
FLOOR_KEYS = ("max_kld", "max_p99", "max_loops", "range", "candidates", "tolerance", "calibrate", "chunks")
PKG_PREFIX = "pkg:"


@dataclass
class BuildSpec:
    """How to make a variant's GGUF when it is missing."""

    base: str  # as written: a path relative to gl.toml, or pkg:<sample model>
    base_path: Path | None  # resolved path; None for pkg: bases
    recipe: str | None = None
    options: dict = field(default_factory=dict)
    map: Path | None = None
    base_type: str | None = None
    imatrix: Path | None = None
    guard: bool = False  # measure against the stock type of nearest size and keep the better (gl quantize --guard)
    floor: dict | None = None  # gl floor's settings: the variant is the smallest file that passes its gates


@dataclass
class Variant:
    model: str
    key: str  # the table name under variants
    tag: str
    gguf: Path
    build: BuildSpec | None = None
    family: str | None = None
    modelfile: Path | None = None
    template: str | None = None
    system: str | None = None
    parameters: dict = field(default_factory=dict)
    license: list[str] | None = None
    messages: list[dict] | None = None
    description: str = ""

    @property
    def name(self) -> str:
        return f"{self.model}:{self.tag}"

    @property
    def keypath(self) -> str:
        return f"models.{self.model}.variants.{self.key}"


@dataclass
class PublishSettings:
    host: str | None = None  # None: $OLLAMA_HOST or Ollama's default
    namespace: str | None = None  # --push publishes <namespace>/<model>:<tag>
    to: str = "auto"  # auto | ollama | bundle | another publisher's name
    bundle_dir: Path | None = None
    retry_seconds: float = 60.0
    insecure: bool = False


@dataclass
class Config:
    path: Path
    root: Path
    variants: dict[str, Variant]  # "model:tag" -> variant
    publish: PublishSettings
    problems: list[Finding] = field(default_factory=list)

    def variant(self, name: str) -> Variant:
        if ":" not in name:
            tags = [v.name for v in self.variants.values() if v.model == name]
            if len(tags) == 1:
                return self.variants[tags[0]]
            raise GLError(f"{name!r}: name a variant as MODEL:TAG; {self.path} declares "
                          f"{', '.join(tags) or 'no variants of this model'}")
        if name in self.variants:
            return self.variants[name]
        known = ", ".join(sorted(self.variants)) or "none"
        raise GLError(f"{self.path} declares no variant {name!r}; declared: {known}")

    def problems_for(self, variant: Variant) -> list[Finding]:
        """Problems of this variant, of its model's shared keys, and of the publish settings."""
        model = f"models.{variant.model}"
        out = []
        for p in self.problems:
            key = p.message.split(": ", 1)[0]
            if key.startswith(f"{model}.variants."):
                if key == variant.keypath or key.startswith((variant.keypath + ".", variant.keypath + "[")):
                    out.append(p)
            elif key in (model, "models", "publish") or key.startswith((model + ".", "publish.")):
                out.append(p)
        return out


class _Checker:
    def __init__(self, path: Path):
        self.path = path
        self.root = path.parent
        self.problems: list[Finding] = []

    def problem(self, keypath: str, message: str, hint: str = "", code: str = "config-invalid"):
        self.problems.append(Finding("error", code, f"{keypath}: {message}", source="gl-check",
                                     file=os.fspath(self.path), hint=hint))

    def keys(self, table: dict, allowed, keypath: str):
        for k in table:
            if k not in allowed:
                close = difflib.get_close_matches(k, allowed, n=1)
                self.problem(f"{keypath}.{k}" if keypath else k, "unknown key",
                             f"did you mean {close[0]}?" if close else f"allowed keys: {', '.join(allowed)}",
                             code="config-unknown-key")

    def string(self, value, keypath: str) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str):
            self.problem(keypath, f"must be a string, not {_tomltype(value)}")
            return None
        return value

    def path_value(self, value, keypath: str, *, must_exist: bool, kind: str = "file") -> Path | None:
        s = self.string(value, keypath)
        if s is None:
            return None
        if not s:
            self.problem(keypath, "is empty")
            return None
        p = Path(s)
        if p.is_absolute() or s.startswith("~"):
            self.problem(keypath, f"{s} is not relative; paths in gl.toml are relative to its folder",
                         f"move the file under {self.root} or link it there")
            return None
        full = Path(os.path.normpath(self.root / p))
        try:
            full.relative_to(os.path.normpath(self.root))
        except ValueError:
            self.problem(keypath, f"{s} leaves the folder of gl.toml", "paths must stay inside " + str(self.root))
            return None
        if must_exist:
            if not full.exists():
                self.problem(keypath, "file not found" if kind == "file" else f"{kind} not found",
                             f"looked for {full}", code="config-file-missing")
            elif kind == "file" and full.is_dir():
                self.problem(keypath, f"{s} is a folder, not a file")
        return full


def _tomltype(v) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array",
            dict: "a table"}.get(type(v), type(v).__name__)


def _parameters(ck: _Checker, table, keypath: str) -> dict:
    if table is None:
        return {}
    if not isinstance(table, dict):
        ck.problem(keypath, f"must be a table of Ollama parameters, not {_tomltype(table)}")
        return {}
    out = {}
    for name, value in table.items():
        kp = f"{keypath}.{name}"
        if name not in mfmod.PARAMETERS:
            low = [p for p in mfmod.PARAMETERS if p.lower() == name.lower()]
            ck.problem(kp, "unknown Ollama parameter",
                       f"parameter names are case-sensitive: {low[0]}" if low
                       else "known: " + ", ".join(mfmod.PARAMETERS), code="config-unknown-parameter")
            continue
        ok = True
        if name in mfmod.INT_PARAMETERS:
            ok = isinstance(value, int) and not isinstance(value, bool)
            want = "an integer"
        elif name in mfmod.FLOAT_PARAMETERS:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            want = "a number"
        elif name in mfmod.BOOL_PARAMETERS:
            ok = isinstance(value, bool)
            want = "true or false"
        else:  # stop
            if isinstance(value, str):
                value = [value]
            ok = isinstance(value, list) and bool(value) and all(isinstance(x, str) and x for x in value)
            want = "a string or an array of strings"
        if not ok:
            ck.problem(kp, f"must be {want}, not {_tomltype(value)} {value!r}")
            continue
        out[name] = float(value) if name in mfmod.FLOAT_PARAMETERS else value
    return out


def _license(ck: _Checker, value, keypath: str) -> list[str] | None:
    if value is None:
        return None
    items = value if isinstance(value, list) else [value]
    out = []
    for i, item in enumerate(items):
        kp = f"{keypath}[{i}]" if isinstance(value, list) else keypath
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, dict) and set(item) == {"file"}:
            p = ck.path_value(item["file"], f"{kp}.file", must_exist=True)
            if p is not None and p.is_file():
                try:
                    out.append(p.read_text(encoding="utf-8"))
                except (OSError, UnicodeDecodeError) as e:
                    ck.problem(f"{kp}.file", f"cannot be read as UTF-8 text ({e})")
        else:
            ck.problem(kp, "must be the license text, or a table { file = \"LICENSE\" }")
    return out


def _messages(ck: _Checker, value, keypath: str) -> list[dict] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        ck.problem(keypath, "must be an array of { role = \"user\", content = \"…\" } tables")
        return None
    out = []
    for i, m in enumerate(value):
        kp = f"{keypath}[{i}]"
        if not isinstance(m, dict) or set(m) != {"role", "content"}:
            ck.problem(kp, "must be a table with exactly role and content")
            continue
        if m["role"] not in mfmod.ROLES:
            ck.problem(f"{kp}.role", f"{m['role']!r} is not one of {', '.join(mfmod.ROLES)}")
            continue
        if not isinstance(m["content"], str):
            ck.problem(f"{kp}.content", "must be a string")
            continue
        out.append({"role": m["role"], "content": m["content"]})
    return out


def _family(ck: _Checker, value, keypath: str) -> str | None:
    from gl_plugins.modelfile.templates import family_name

    s = ck.string(value, keypath)
    if s is None:
        return None
    try:
        return family_name(s)
    except GLError as e:
        ck.problem(keypath, str(e))
        return None


def _modelfile(ck: _Checker, value, keypath: str) -> Path | None:
    p = ck.path_value(value, keypath, must_exist=True)
    if p is not None and p.is_file():
        try:
            mfmod.parse_file(p, require_from=False)
        except InputError as e:
            ck.problem(keypath, str(e), code="config-modelfile")
    return p


def _build(ck: _Checker, table, keypath: str) -> BuildSpec | None:
    if not isinstance(table, dict):
        ck.problem(keypath, f"must be a table (base, recipe/options or map/base_type, imatrix), not "
                            f"{_tomltype(table)}")
        return None
    ck.keys(table, BUILD_KEYS, keypath)
    base = ck.string(table.get("base"), f"{keypath}.base")
    if base is None:
        if "base" not in table:
            ck.problem(f"{keypath}.base", "is required: the GGUF to quantize from")
        return None
    base_path = None
    if base.startswith(PKG_PREFIX):
        from gl_plugins.toolchain.samples import ALIASES, SAMPLES

        name = base[len(PKG_PREFIX):].lower()
        if ALIASES.get(name, name) not in SAMPLES:
            ck.problem(f"{keypath}.base", f"unknown packaged model {base!r}; known: "
                       + ", ".join(PKG_PREFIX + m for m in SAMPLES))
    else:
        base_path = ck.path_value(base, f"{keypath}.base", must_exist=True)
    recipe = ck.string(table.get("recipe"), f"{keypath}.recipe")
    options = table.get("options", {})
    if not isinstance(options, dict):
        ck.problem(f"{keypath}.options", "must be a table of recipe options")
        options = {}
    elif options and recipe is None:
        ck.problem(f"{keypath}.options", "is given without a recipe")
    map_path = ck.path_value(table["map"], f"{keypath}.map", must_exist=True) if "map" in table else None
    base_type = ck.string(table.get("base_type"), f"{keypath}.base_type")
    imatrix = (ck.path_value(table["imatrix"], f"{keypath}.imatrix", must_exist=True)
               if "imatrix" in table else None)
    if recipe and "map" in table:
        ck.problem(keypath, "give either recipe (with options) or map (with base_type), not both")
    if "map" in table and not base_type:
        ck.problem(f"{keypath}.base_type", "is required with map: the llama-quantize type for "
                                           "tensors the map does not name")
    floor = _floor(ck, table["floor"], f"{keypath}.floor") if "floor" in table else None
    if "floor" in table and (recipe or "map" in table or base_type or table.get("guard")):
        ck.problem(f"{keypath}.floor", "chooses the file by measurement; give it without recipe, map, base_type "
                                       "and guard")
    elif not recipe and "map" not in table and not base_type and "floor" not in table:
        ck.problem(keypath, "needs recipe, map (with base_type), base_type or floor")
    if base_type:
        from gl_plugins.ggml_types import FTYPES

        if base_type.upper() not in FTYPES:
            ck.problem(f"{keypath}.base_type", f"{base_type!r} is not a llama-quantize file type")
    guard = table.get("guard", False)
    if not isinstance(guard, bool):
        ck.problem(f"{keypath}.guard", f"must be true or false, not {_tomltype(guard)}")
        guard = False
    elif guard and not recipe and "map" not in table:
        ck.problem(f"{keypath}.guard", "compares a plan with llama.cpp's stock type of nearest size; it needs "
                                       "recipe or map")
    return BuildSpec(base, base_path, recipe, dict(options), map_path, base_type.upper() if base_type else None,
                     imatrix, guard, floor)


def _floor(ck: _Checker, table, keypath: str) -> dict | None:
    """build.floor: gl floor's settings, as find_floor's keyword arguments."""
    if not isinstance(table, dict):
        ck.problem(keypath, f"must be a table of gl floor settings ({', '.join(FLOOR_KEYS)}), not {_tomltype(table)}")
        return None
    ck.keys(table, FLOOR_KEYS, keypath)
    out: dict = {}
    for key in ("max_kld", "max_p99", "max_loops", "tolerance"):
        if key in table:
            v = table[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0 or (key == "max_loops" and v > 1):
                ck.problem(f"{keypath}.{key}", "must be a number above 0" + (" and at most 1" if key == "max_loops"
                                                                              else "") + f", not {v!r}")
            else:
                out[key] = float(v)
    if "chunks" in table:
        v = table["chunks"]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            ck.problem(f"{keypath}.chunks", f"must be a whole number of chunks, 1 or more, not {v!r}")
        else:
            out["chunks"] = v
    if "range" in table:
        v = table["range"]
        try:
            low, high = (float(x) for x in str(v).split("-"))
            if not 0 < low < high <= 32:
                raise ValueError
        except ValueError:
            ck.problem(f"{keypath}.range", f"must be \"LOW-HIGH\" bits per weight with 0 < LOW < HIGH <= 32, not {v!r}")
        else:
            out["low"], out["high"] = low, high
    if "candidates" in table:
        v = table["candidates"]
        kinds = [k.strip() for k in v.split(",")] if isinstance(v, str) else None
        if not kinds or not set(kinds) <= {"stock", "budget"}:
            ck.problem(f"{keypath}.candidates", f"must be \"stock\", \"budget\" or \"stock,budget\", not {v!r}")
        else:
            out["kinds"] = tuple(kinds)
    if "calibrate" in table:
        if not isinstance(table["calibrate"], bool):
            ck.problem(f"{keypath}.calibrate", f"must be true or false, not {_tomltype(table['calibrate'])}")
        else:
            out["calibrate"] = table["calibrate"]
    return out


def _publish(ck: _Checker, table) -> PublishSettings:
    s = PublishSettings(bundle_dir=ck.root / "dist")
    if table is None:
        return s
    if not isinstance(table, dict):
        ck.problem("publish", "must be a table")
        return s
    ck.keys(table, PUBLISH_KEYS, "publish")
    s.host = ck.string(table.get("host"), "publish.host")
    ns = ck.string(table.get("namespace"), "publish.namespace")
    if ns is not None:
        problem = part_problem("namespace", ns)
        if problem:
            ck.problem("publish.namespace", f"{ns!r} {problem}")
        else:
            s.namespace = ns
    to = ck.string(table.get("to"), "publish.to")
    if to is not None:
        s.to = to
    if "bundle_dir" in table:
        s.bundle_dir = ck.path_value(table["bundle_dir"], "publish.bundle_dir", must_exist=False) or s.bundle_dir
    if "retry_seconds" in table:
        v = table["retry_seconds"]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            ck.problem("publish.retry_seconds", "must be a number of seconds, 0 or more")
        else:
            s.retry_seconds = float(v)
    if "insecure" in table:
        if isinstance(table["insecure"], bool):
            s.insecure = table["insecure"]
        else:
            ck.problem("publish.insecure", "must be true or false")
    return s


def _shared(ck: _Checker, table: dict, keypath: str) -> dict:
    out = {}
    if "family" in table:
        out["family"] = _family(ck, table["family"], f"{keypath}.family")
    if "modelfile" in table:
        out["modelfile"] = _modelfile(ck, table["modelfile"], f"{keypath}.modelfile")
    for k in ("template", "system"):
        if k in table:
            out[k] = ck.string(table[k], f"{keypath}.{k}")
    if "parameters" in table:
        out["parameters"] = _parameters(ck, table["parameters"], f"{keypath}.parameters")
    if "license" in table:
        out["license"] = _license(ck, table["license"], f"{keypath}.license")
    if "messages" in table:
        out["messages"] = _messages(ck, table["messages"], f"{keypath}.messages")
    return out


def _variant(ck: _Checker, model: str, key: str, table, defaults: dict) -> Variant | None:
    kp = f"models.{model}.variants.{key}"
    if not isinstance(table, dict):
        ck.problem(kp, f"must be a table, not {_tomltype(table)}")
        return None
    ck.keys(table, VARIANT_KEYS, kp)
    tag = ck.string(table.get("tag", key), f"{kp}.tag") or key
    bad_tag = part_problem("tag", tag) or reserved_tag_problem(tag)
    if bad_tag:
        ck.problem(f"{kp}.tag" if "tag" in table else kp, f"tag {tag!r} {bad_tag}")
    build = _build(ck, table["build"], f"{kp}.build") if "build" in table else None
    if "gguf" in table:
        gguf = ck.path_value(table["gguf"], f"{kp}.gguf", must_exist=build is None)
        if gguf is not None and build is None and gguf.is_file():
            _gguf_readable(ck, gguf, f"{kp}.gguf")
    elif build is not None:
        gguf = ck.root / "build" / f"{model}-{tag}.gguf"
    else:
        ck.problem(kp, "needs gguf (the file to publish) or build (how to make it)")
        gguf = None
    own = _shared(ck, table, kp)
    merged = {**defaults, **{k: v for k, v in own.items() if v is not None}}
    merged["parameters"] = {**defaults.get("parameters", {}), **own.get("parameters", {})}
    if gguf is None or bad_tag:
        return None
    return Variant(model, key, tag, gguf, build, description=str(table.get("description", "")), **merged)


def _gguf_readable(ck: _Checker, path: Path, keypath: str):
    from gl_plugins.model.gguf_header import read_header

    try:
        read_header(path)
    except InputError as e:
        ck.problem(keypath, str(e), code="config-gguf")


def load_config(path: str | os.PathLike | None = None) -> Config:
    """Read and check gl.toml; problems are collected in ``Config.problems``, never raised."""
    p = Path(path) if path is not None else Path(DEFAULT_NAME)
    if p.is_dir():
        p = p / DEFAULT_NAME
    raw = read_input(p, "a gl.toml file")
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise InputError(p, f"is not UTF-8 text (at byte {e.start})") from None
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(e))
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(e))
        raise InputError(p, f"is not valid TOML: {msg}", line=int(m.group(1)) if m else None) from None
    p = p.absolute()
    ck = _Checker(p)
    ck.keys(data, TOP_KEYS, "")
    publish = _publish(ck, data.get("publish"))
    variants: dict[str, Variant] = {}
    models = data.get("models")
    if models is None:
        ck.problem("models", "is missing: declare at least one [models.NAME.variants.TAG] table")
        models = {}
    elif not isinstance(models, dict):
        ck.problem("models", "must be a table of models")
        models = {}
    for model, mtable in models.items():
        kp = f"models.{model}"
        problem = part_problem("model", model)
        if problem:
            ck.problem(kp, f"model name {model!r} {problem}")
            continue
        if not isinstance(mtable, dict):
            ck.problem(kp, f"must be a table, not {_tomltype(mtable)}")
            continue
        ck.keys(mtable, MODEL_KEYS, kp)
        defaults = {k: v for k, v in _shared(ck, mtable, kp).items() if v is not None}
        vtable = mtable.get("variants")
        if not isinstance(vtable, dict) or not vtable:
            ck.problem(f"{kp}.variants", "is missing: declare at least one [" + kp + ".variants.TAG] table")
            continue
        for key, table in vtable.items():
            v = _variant(ck, model, key, table, defaults)
            if v is None:
                continue
            if v.name in variants:
                ck.problem(f"{v.keypath}.tag", f"tag {v.tag!r} is already used by "
                                                f"{variants[v.name].keypath}")
                continue
            variants[v.name] = v
    return Config(p, p.parent, variants, publish, ck.problems)


def check_recipes(cfg: Config) -> None:
    """Add a problem for every build that names a recipe no plugin provides."""
    builds = [v for v in cfg.variants.values() if v.build and v.build.recipe]
    if not builds:
        return
    from gl_plugins.host import collect
    from gl_plugins.plan.sources import unknown_recipe

    recipes = collect("gl_register_recipes")
    for v in builds:
        if v.build.recipe not in recipes:
            cfg.problems.append(Finding("error", "config-unknown-recipe",
                                        f"{v.keypath}.build.recipe: {unknown_recipe(v.build.recipe, recipes)}",
                                        source="gl-check", file=os.fspath(cfg.path),
                                        hint="name an installed recipe, or install the plugin that provides it"))
