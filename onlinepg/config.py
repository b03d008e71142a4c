"""Run configuration: the schema (every key, its default and accepted values), TOML in and out, overrides.

A config is a dict of four sections — ``task``, ``base``, ``algo``, ``run`` — each a flat dict of scalars
or lists. ``resolve(user)`` fills defaults, checks every key, and returns the fully resolved config; an
unknown section or key, or a bad value, raises one ``ConfigError`` naming ``section.key`` and the accepted
values, before anything is written anywhere.
"""
import dataclasses
import math
import numbers
import re
import sys
from dataclasses import dataclass

from .errors import ConfigError
from .kernels.codes import (ADV_ESTIMATORS, BASELINE_ALIASES, BASELINES, BEHAVIOURS, LOSS_TYPES, LR_RULES,
                            SCALE_REWARDS)
from .kernels.rounds import ALGOS as ROUND_ALGOS, PROCESS_VARIANTS
from .validate import BOUNDS, INT64_MAX, INT64_MIN, in_int64, int_text, outside

BATCH_ALGOS = ("pg_batch", "grpo")  # batched algorithms (sgd with batch > 1 too): onlinepg.learners.BatchLearner

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


@dataclass(frozen=True)
class Key:
    default: object
    kind: type                 # int, float, bool, str, list
    doc: str
    lo: float = None
    hi: float = None
    choices: tuple = None
    open_lo: bool = False
    open_hi: bool = False

    def check(self, name, value):
        value = _plain(value)
        if self.kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if self.kind is list:
            value = [_plain(x) for x in value] if isinstance(value, (list, tuple)) else value
            if not isinstance(value, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                      and math.isfinite(x) for x in value):
                raise ConfigError(f"{name} must be a list of finite numbers, got {value!r}")
            return [float(x) for x in value]
        if not isinstance(value, self.kind) or (self.kind is int and isinstance(value, bool)):
            raise ConfigError(f"{name} must be {self.accepted()}, got {value!r}")
        if self.kind is int and not in_int64(value):
            raise ConfigError(f"{name} must be {self.accepted(int64=True)}, got {value}")
        if self.choices is not None and value not in self.choices:
            raise ConfigError(f"{name} must be {self.accepted()}, got {value!r}")
        if self.kind in (int, float):
            if self.kind is float and not math.isfinite(value):
                raise ConfigError(f"{name} must be {self.accepted()}, got {value!r}")
            if outside(value, self.lo, self.hi, self.open_lo, self.open_hi):
                raise ConfigError(f"{name} must be {self.accepted()}, got {value!r}")
        return value

    def accepted(self, int64=False):
        """What the key accepts, as the docs and the errors say it; ``int64``: an integer key's missing bounds as
        the int64 ends (for a value outside int64, which TOML and Python integers can hold but no kernel can)."""
        if self.choices is not None:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.kind is bool:
            return "true or false"
        if self.kind is list:
            return "a list of numbers"
        if self.kind is str:
            return "a string"
        word = "an integer" if self.kind is int else "a number"
        lo, hi = self.lo, self.hi
        if int64:
            lo, hi = INT64_MIN if lo is None else lo, INT64_MAX if hi is None else hi
        if lo is None and hi is None:
            return word
        text = int_text if self.kind is int else (lambda v: f"{v:g}")
        left = ("(" if self.open_lo else "[") + ("-inf" if lo is None else text(lo))
        right = "inf)" if hi is None else text(hi) + (")" if self.open_hi else "]")
        return f"{word} in {left}, {right}"


def _plain(value):
    """NumPy scalars (np.int64(3), np.float32(0.5), np.bool_) as the Python scalars they stand for."""
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if type(value).__module__ == "numpy":
        if isinstance(value, numbers.Integral):
            return int(value)
        if isinstance(value, numbers.Real):
            return float(value)
        if getattr(value, "dtype", None) is not None and value.dtype.kind == "b" and getattr(value, "ndim", 1) == 0:
            return bool(value)
    return value


ALGOS = ROUND_ALGOS + BATCH_ALGOS

SCHEMA = {
    "task": {
        "kind": Key("teacher", str, "'teacher' (paper §2 bigram teacher), 'cells' (exact-margin one-hot "
                    "instance) or 'constant' (constant-sequence family: M orthogonal directions, y* = (B, …, B), "
                    "B ∈ {0, 1}, context-only features, a head context and a tail of mass task.tail)",
                    choices=("teacher", "cells", "constant")),
        "d": Key(16, int, "context dimension (teacher)", lo=1),
        "k": Key(16, int, "vocabulary size", lo=BOUNDS["k"][0]),
        "N": Key(16, int, "response length in tokens", lo=BOUNDS["N"][0]),
        "contexts": Key("mixture", str, "teacher contexts: 'rademacher' or 'mixture'",
                        choices=("rademacher", "mixture")),
        "centres": Key(16, int, "mixture centres M (≤ d)", lo=1),
        "sigma": Key(0.05, float, "mixture noise scale σ", lo=0.0, open_lo=True),
        "normalize": Key(False, bool, "normalised features (‖φ‖ ≤ 1) instead of the paper's raw x"),
        "M": Key(0, int, "cells: number of contexts (0: derived from gamma as round(1/(N γ²))); constant: number "
                 "of context directions, ≥ 2 (0: round(k/((k−1) γ²)))", lo=0),
        "gamma": Key(0.1, float, "cells / constant: margin γ (used when M = 0)", lo=0.0, hi=1.0, open_lo=True,
                     open_hi=True),
        "tail": Key(0.1, float, "constant: total mass of the tail contexts 1 … M−1 (the head context 0 has the "
                    "rest)", lo=0.0, hi=1.0, open_lo=True, open_hi=True),
        "seed": Key(0, int, "task seed (teacher / y* draw and context streams)", lo=BOUNDS["seed"][0],
                    hi=BOUNDS["seed"][1]),
        "stream": Key("iid", str, "'iid' fresh contexts, or a finite pool: 'cycle' or 'shuffle' "
                      "(reshuffled every epoch)", choices=("iid", "cycle", "shuffle")),
        "pool": Key(0, int, "finite pool size for cycle/shuffle (0: all M cells contexts; teacher needs ≥ 1)",
                    lo=0),
        "offset": Key(0, int, "index of the stream's first context: round t (batched: step t) reads the contexts "
                      "from t·(contexts per round) + offset on, so a chain of runs can continue one stream", lo=0,
                      hi=2**62),
        "test_contexts": Key(2048, int, "held-out contexts for the exact test error", lo=1),
    },
    "base": {
        "kind": Key("zero", str, "initial weights: 'zero' (uniform policy), 'pretrain' (batched supervised "
                    "stage), 'load' (weights file), 'alpha' / 'staircase' / 'bottleneck' (cells bases with a "
                    "prescribed likelihood)",
                    choices=("zero", "pretrain", "load", "alpha", "staircase", "bottleneck")),
        "steps": Key(200, int, "pretrain: supervised steps", lo=1),
        "batch": Key(256, int, "pretrain: batch size", lo=1),
        "lr": Key(0.1, float, "pretrain: learning rate", lo=0.0, open_lo=True),
        "lr_rule": Key("adagrad", str, "pretrain: 'adagrad', 'adaptive' or 'constant'",
                       choices=tuple(sorted(LR_RULES))),
        "path": Key("", str, "load: a weights .npz (a run's checkpoint or onlinepg.save_policy output)"),
        "alpha": Key(0.01, float, "alpha / bottleneck: likelihood α of y* under the base", lo=0.0, hi=1.0,
                     open_lo=True, open_hi=True),
        "alphas": Key([1e-4, 0.5], list, "staircase: likelihood of each context group"),
        "fractions": Key([1.0, 1.0], list, "staircase: relative group sizes"),
        "position": Key(0, int, "bottleneck: the hard position", lo=0),
        "easy": Key(0.99, float, "bottleneck: per-token probability at the easy positions", lo=0.0, hi=1.0,
                    open_lo=True, open_hi=True),
    },
    "algo": {
        "name": Key("pg_batch", str, "the algorithm (docs/theory.md §4)", choices=ALGOS),
        "lr_rule": Key("adaptive", str, "'adaptive' (η = 1/(4+2‖g‖²)), 'constant' or 'adagrad'",
                       choices=tuple(LR_RULES)),
        "lr": Key(0.1, float, "constant / Adagrad learning rate", lo=0.0, open_lo=True),
        "behaviour": Key("policy", str, "pg: behaviour policy q", choices=tuple(BEHAVIOURS)),
        "eps": Key(0.1, float, "eps_mixture: token mixing weight ε; banditron: exploration rate (the uniform "
                   "share of the played label)", lo=0.0, hi=1.0),
        "reward": Key("01", str, "'01' (0/1) or 'pm1' (±1, the paper code's variant)", choices=("01", "pm1")),
        "baseline": Key("none", str, "'none', 'batch_mean', 'group_mean' or 'loo' (leave-one-out: the mean "
                        "reward of the other samples of the group; pg_batch with group_size = 1: of the other "
                        "samples of the whole batch; 'rloo' is another name for 'loo')",
                        choices=tuple(BASELINES) + tuple(BASELINE_ALIASES)),
        "group_size": Key(1, int, "samples per context G (group baselines)", lo=1),
        "std_scale": Key(False, bool, "divide group advantages by the group's reward std (GRPO-style)"),
        "iw_clip": Key(0.0, float, "importance weight p/q clipped to [1/ζ, ζ]; 0 = off, else ζ ≥ 1", lo=0.0),
        "batch": Key(1, int, "pg_batch / sgd: contexts per update (sgd: 1 = per-round)", lo=1),
        "m": Key(8, int, "best_of_m: exploration draws from ½base + ½uniform", lo=1),
        "m_tok": Key(8, int, "pg_process: candidate tokens per position", lo=1),
        "variant": Key("explore", str, "pg_process: 'explore' (Algorithm 2), 'binary_search' or 'on_policy'",
                       choices=PROCESS_VARIANTS),
        "reward_type": Key("outcome", str, "pg_batch: 'outcome' (ORM) or 'process' (PRM)",
                           choices=("outcome", "process")),
        # the GRPO family (algo.name = 'grpo'; docs/theory.md §4.9): TRL GRPOConfig's names, verl's where TRL has none
        "num_generations": Key(8, int, "grpo: samples per context G (TRL num_generations); algo.batch counts the "
                               "samples of a step and must be a multiple of G", lo=1),
        "adv_estimator": Key("grpo", str, "grpo: the advantage (verl adv_estimator): 'grpo' (group mean removed, "
                             "scaled as scale_rewards), 'rloo' (the other samples' mean removed), 'raft' (SFT on the "
                             "correct samples) or 'pass_k' (PKPO's unbiased pass@k transform, k = algo.pkpo_k)",
                             choices=tuple(ADV_ESTIMATORS)),
        "scale_rewards": Key("group", str, "grpo, rloo: divide the advantages by the group's ('group') or the batch's "
                             "('batch') reward std + 1e-4, or not ('none') (TRL scale_rewards)",
                             choices=tuple(SCALE_REWARDS)),
        "pkpo_k": Key(4, int, "adv_estimator 'pass_k': the k of the pass@k objective, 1 <= k <= num_generations",
                      lo=1),
        "epsilon": Key(0.2, float, "grpo: the ratio's clip below 1, clip(ρ, 1 − ε, 1 + ε_high) (TRL epsilon)",
                       lo=0.0, hi=1.0),
        "epsilon_high": Key(0.0, float, "grpo: the ratio's clip above 1 (TRL epsilon_high; DAPO's clip-higher "
                            "0.28); 0 = algo.epsilon", lo=0.0),
        "num_iterations": Key(1, int, "grpo: updates per batch of samples (TRL num_iterations, μ); the ratio is "
                              "against the policy that drew them", lo=1),
        "beta": Key(0.0, float, "grpo: the weight of the k3 KL penalty to the reference policy, the base model "
                    "(TRL beta)", lo=0.0),
        "loss_type": Key("grpo", str, "grpo: the loss normalisation (TRL loss_type): 'grpo' (per-response token "
                         "mean, then mean), 'bnpo' and 'dapo' (token mean over the batch), 'dr_grpo' (token sum / "
                         "(batch · max_completion_length)); with every response N tokens long they differ only "
                         "through max_completion_length", choices=LOSS_TYPES),
        "max_completion_length": Key(0, int, "loss_type 'dr_grpo': its length normaliser, >= task.N (0 = task.N)",
                                     lo=0),
        "entropy_coeff": Key(0.0, float, "grpo: the weight of the entropy bonus, the policy's exact entropy at the "
                             "sampled prefixes (verl entropy_coeff)", lo=0.0),
        "init": Key("base", str, "the learner's start w_1: 'base' (the base model's weights) or 'zero' (w = 0, the "
                    "uniform policy); exploration from the base q₀ (best_of_m, pg_process, pg with behaviour base or "
                    "mixture) uses the base either way", choices=("base", "zero")),
    },
    "run": {
        "rounds": Key(1000, int, "rounds (per-round algorithms) or steps (batched: pg_batch, sgd with "
                      "batch > 1)", lo=1),
        "seed": Key(0, int, "sampling seed", lo=BOUNDS["seed"][0], hi=BOUNDS["seed"][1]),
        "eval_every": Key(100, int, "rounds between exact test-error evaluations", lo=1),
        "eval_log_points": Key(0, int, "extra test-error evaluations at n log-spaced rounds ⌊rounds^(i/n)⌋, "
                               "i = 1 … n, so log-x curves are dense early (0: none)", lo=0, hi=10000),
        "track_every": Key(0, int, "rounds between the tracked contexts' likelihoods (0: at every test-error "
                           "evaluation); the round 0 and the last round are always tracked", lo=0),
        "target_error": Key(0.0, float, "stop at the first evaluation whose exact test error is <= this "
                            "(0: run all rounds)", lo=0.0, hi=1.0, open_hi=True),
        "max_queries": Key(0, int, "stop at the first evaluation at which the reward queries (ORM + PRM) have "
                           "reached this (0: no limit)", lo=0),
        "trace_every": Key(1, int, "write every n-th round to rounds/ (decimation)", lo=1),
        "chunk": Key(65536, int, "rounds per kernel call (any value gives the same trace)", lo=1),
        "checkpoint_every": Key(0, int, "rounds between checkpoints and Parquet flushes (0: every "
                                "eval_every · ⌈10^5 / (eval_every·batch·N)⌉ rounds)", lo=0),
        "keep_checkpoints": Key(3, int, "checkpoints kept on disk (the newest; 0 keeps all)", lo=0),
        "tracked": Key("centres", str, "contexts whose likelihood is tracked at each evaluation: 'centres' "
                       "(mixture centres), 'test' (the first tracked_count test contexts) or 'none'",
                       choices=("centres", "test", "none")),
        "tracked_count": Key(32, int, "tracked contexts for tracked = 'test'", lo=1),
        "pass_k": Key([float(2 ** i) for i in range(21)], list, "the k of the exact pass@k written to passk/ at "
                      "every evaluation (increasing integers >= 1; default 1, 2, 4, …, 2^20)"),
        "delta_se_k": Key(256, int, "ΔSE = base pass@K − policy pass@1 at this K (eval/, as Yue et al.)", lo=1),
        "support_zeta": Key(0.05, float, "support metrics: y* is in a model's support when its likelihood is >= "
                            "−ln(support_zeta)/support_k (found in support_k samples with probability 1 − ζ)",
                            lo=0.0, hi=1.0, open_lo=True, open_hi=True),
        "support_k": Key(256, int, "support metrics: the sample count k of the threshold −ln ζ / k", lo=1),
        "entropy_contexts": Key(64, int, "eval/'s entropy_ystar and entropy_sampled are averaged over the first "
                                "this many test contexts (0: not computed, written as 0)", lo=0),
        "progress": Key(True, bool, "show a progress bar (stderr)"),
    },
}


# -- the resolved config: frozen, typed sections -------------------------------------------------------------
#
# ``resolve`` returns a ``Spec``: four frozen dataclasses whose fields are the schema's keys (read as
# ``spec.task.k``), each value checked, and every value derived from several keys defined once, here, as a
# property. Downstream code reads the spec; only the TOML/``--set`` layer above sees dicts.

def margin_contexts(kind, k, N, M, gamma):
    """The number of contexts of a margin task: ``M`` if given, else the M that the margin ``gamma`` asks for —
    cells round(1/(N γ²)) (at least 1), constant round(k/((k−1) γ²)) (at least 2). The one definition: the config,
    the memory bound and the tasks (``tasks.CellsTask``, ``tasks.ConstantTask``) use it."""
    if M:
        return M
    if kind == "cells":
        return max(1, int(round(1.0 / (N * gamma ** 2))))
    return max(2, int(round(k / ((k - 1) * gamma ** 2))))


class _Section:
    """What every section shares: its keys as a plain dict (lists as lists), for TOML and comparisons."""

    def to_dict(self):
        return {f.name: (list(v) if isinstance(v, tuple) else v)
                for f in dataclasses.fields(self) for v in (getattr(self, f.name),)}


class _TaskProps(_Section):
    @property
    def contexts_M(self):
        """The number of contexts of a margin task (``margin_contexts``); 0 for the teacher."""
        return margin_contexts(self.kind, self.k, self.N, self.M, self.gamma) if self.kind != "teacher" else 0

    @property
    def context_dim(self):
        """Floats per context row: d (teacher), M one-hot directions (constant), 0 (cells: a context is its id)."""
        return {"teacher": self.d, "constant": self.contexts_M, "cells": 0}[self.kind]

    @property
    def D(self):
        """The feature (weight) dimension: M·N·k for cells, context_dim·k + k² for the bigram map."""
        if self.kind == "cells":
            return self.contexts_M * self.N * self.k
        return self.context_dim * self.k + self.k * self.k


class _AlgoProps(_Section):
    @property
    def batched(self):
        """True for the batched algorithms (pg_batch; sgd with algo.batch > 1): a round is a step over a batch."""
        return self.name in BATCH_ALGOS or (self.name == "sgd" and self.batch > 1)

    @property
    def group(self):
        """Samples per group G that a baseline averages over: algo.num_generations for grpo, algo.group_size for
        the group baselines (group_mean, loo), else 1."""
        if self.name == "grpo":
            return self.num_generations
        return self.group_size if self.baseline in ("group_mean", "loo") else 1

    @property
    def whole_batch(self):
        """True when the baseline pools the whole batch (batch_mean, or loo with one sample per context)."""
        return self.name != "grpo" and (self.baseline == "batch_mean" or (self.baseline == "loo" and self.group == 1))

    @property
    def clip_high(self):
        """The ratio's clip above 1 a grpo step uses: algo.epsilon_high, or algo.epsilon when that is 0 (TRL's
        None)."""
        return self.epsilon_high or self.epsilon

    @property
    def loss_length(self):
        """The per-response length a grpo loss divides by: max_completion_length for dr_grpo (0: N), else 0 (the
        response's own N tokens)."""
        return self.max_completion_length if self.loss_type == "dr_grpo" else 0


def _section_class(name, sec, props):
    cls = dataclasses.make_dataclass(name, [(key, object) for key in SCHEMA[sec]], bases=(props,), frozen=True)
    cls.__module__ = __name__           # pickled by name (sweep workers receive specs)
    return cls


TaskSpec = _section_class("TaskSpec", "task", _TaskProps)
BaseSpec = _section_class("BaseSpec", "base", _Section)
AlgoSpec = _section_class("AlgoSpec", "algo", _AlgoProps)
RunSpec = _section_class("RunSpec", "run", _Section)
SECTION_CLASSES = {"task": TaskSpec, "base": BaseSpec, "algo": AlgoSpec, "run": RunSpec}


@dataclasses.dataclass(frozen=True)
class Spec:
    """A resolved run config: ``spec.task``, ``spec.base``, ``spec.algo``, ``spec.run`` (frozen, typed)."""

    task: TaskSpec
    base: BaseSpec
    algo: AlgoSpec
    run: RunSpec

    @classmethod
    def from_dict(cls, resolved):
        return cls(**{sec: SECTION_CLASSES[sec](**{k: (tuple(v) if isinstance(v, list) else v)
                                                  for k, v in resolved[sec].items()}) for sec in SCHEMA})

    def to_dict(self):
        """The sections as plain dicts (a user config ``resolve`` gives back the same spec)."""
        return {sec: getattr(self, sec).to_dict() for sec in SCHEMA}

    def replace(self, **sections):
        """A copy with some keys changed, e.g. ``spec.replace(run={"progress": False})`` (not re-checked)."""
        return Spec(**{sec: dataclasses.replace(getattr(self, sec), **sections.get(sec, {})) for sec in SCHEMA})

    @property
    def quiet(self):
        """This spec with run.progress off: what decides the numbers (progress changes none)."""
        return self.replace(run={"progress": False})


def defaults():
    return {sec: {key: spec.default for key, spec in keys.items()} for sec, keys in SCHEMA.items()}


def resolve(user):
    """Defaults ⊕ user values (a dict of sections, or a ``Spec``), every key checked; returns a ``Spec``."""
    if isinstance(user, Spec):
        user = user.to_dict()
    if not isinstance(user, dict):
        raise ConfigError("config must be a table of sections: task, base, algo, run")
    check_depth(user, "config")         # a dict from the Python API has not been through parse_toml
    out = defaults()
    for sec, values in user.items():
        if sec not in SCHEMA:
            raise ConfigError(f"unknown config section [{sec}]; accepted: {', '.join(SCHEMA)}")
        if not isinstance(values, dict):
            raise ConfigError(f"[{sec}] must be a table of keys")
        for key, value in values.items():
            if key not in SCHEMA[sec]:
                raise ConfigError(f"unknown key {sec}.{key}; accepted: {', '.join(SCHEMA[sec])}")
            out[sec][key] = SCHEMA[sec][key].check(f"{sec}.{key}", value)
    _cross_checks(out)
    return Spec.from_dict(out)


def _cross_checks(c):
    t, b, a, r = c["task"], c["base"], c["algo"], c["run"]
    if t["kind"] == "teacher" and t["contexts"] == "mixture" and t["centres"] > t["d"]:
        raise ConfigError(f"task.centres must be <= task.d ({t['d']}) for mixture contexts, got {t['centres']}")
    if t["kind"] == "teacher" and t["stream"] != "iid" and t["pool"] < 1:
        raise ConfigError("task.pool must be an integer >= 1 for a teacher task with stream 'cycle' or 'shuffle'")
    if t["kind"] == "constant" and t["M"] == 1:
        raise ConfigError("task.M must be 0 (derived from task.gamma) or an integer >= 2 for task.kind = 'constant' "
                          "(a head context and at least one tail context), got 1")
    if b["kind"] in ("alpha", "staircase", "bottleneck") and t["kind"] != "cells":
        raise ConfigError(f"base.kind {b['kind']!r} needs task.kind = 'cells'")
    if b["kind"] == "load" and not b["path"]:
        raise ConfigError("base.path must name a weights file when base.kind = 'load'")
    if b["kind"] == "staircase":
        if len(b["alphas"]) < 1 or len(b["alphas"]) != len(b["fractions"]):
            raise ConfigError("base.alphas and base.fractions must be non-empty lists of the same length")
        if any(not 0 < x < 1 for x in b["alphas"]) or any(x <= 0 for x in b["fractions"]):
            raise ConfigError("base.alphas must lie in (0, 1) and base.fractions must be > 0")
    if b["kind"] == "bottleneck" and b["position"] >= t["N"]:
        raise ConfigError(f"base.position must be an integer in [0, {t['N'] - 1}], got {b['position']}")
    if a["name"] in ("perceptron", "banditron") and t["N"] != 1:
        raise ConfigError(f"algo.name {a['name']!r} needs task.N = 1 (a multiclass learner), got {t['N']}")
    if a["iw_clip"] != 0.0 and a["iw_clip"] < 1.0:
        raise ConfigError(f"algo.iw_clip must be 0 (off) or a number >= 1, got {a['iw_clip']}")
    if a["baseline"] in BASELINE_ALIASES:
        a["baseline"] = BASELINE_ALIASES[a["baseline"]]
    _grpo_checks(t, a)
    grouped = a["baseline"] in ("group_mean", "loo") or (a["name"] == "pg" and a["baseline"] == "batch_mean")
    if a["name"] == "pg_batch" and a["baseline"] in ("group_mean", "loo") and a["batch"] % a["group_size"]:
        raise ConfigError(f"algo.batch ({a['batch']}) must be a multiple of algo.group_size "
                          f"({a['group_size']}) for the {a['baseline']} baseline")
    if a["name"] in ("pg", "pg_batch") and grouped and a["group_size"] < 2 and not (
            a["name"] == "pg_batch" and a["baseline"] == "loo"):
        raise ConfigError(f"algo.group_size must be >= 2 for the {a['baseline']} baseline (one sample per group "
                          "has zero advantage, so nothing would ever be learned)")
    if a["name"] == "pg_batch" and a["baseline"] in ("none", "batch_mean") and a["group_size"] != 1:
        raise ConfigError(f"algo.group_size must be 1 for pg_batch with baseline {a['baseline']!r} (got "
                          f"{a['group_size']}): only the group_mean and loo baselines form groups; set "
                          "algo.baseline = 'group_mean' or 'loo', or drop algo.group_size")
    if t["kind"] == "cells" and t["stream"] != "iid" and t["pool"] > 0:
        m = margin_contexts("cells", t["k"], t["N"], t["M"], t["gamma"])
        if t["pool"] > m:
            raise ConfigError(f"task.pool must be an integer in [0, {m}] for this cells task (task.M = {m}; 0 "
                              f"means all M contexts), got {t['pool']}: a larger pool would repeat contexts")
    if a["std_scale"] and a["baseline"] == "none":
        raise ConfigError("algo.std_scale needs a baseline (algo.baseline = batch_mean, group_mean or loo)")
    if r["tracked"] == "centres" and not (t["kind"] == "teacher" and t["contexts"] == "mixture"):
        r["tracked"] = "test"
    ks = r["pass_k"]
    if (not ks or any(k != int(k) or not 1 <= k <= 2 ** 53 for k in ks)
            or any(b <= a for a, b in zip(ks, ks[1:]))):
        raise ConfigError(f"run.pass_k must be a non-empty list of increasing integers in [1, 2^53], got {list(ks)}")


GRPO_KEYS = ("num_generations", "adv_estimator", "scale_rewards", "pkpo_k", "epsilon", "epsilon_high",
             "num_iterations", "beta", "loss_type", "max_completion_length", "entropy_coeff")
PG_KEYS = ("baseline", "group_size", "std_scale")        # pg / pg_batch's advantages; grpo has its own


def _grpo_checks(t, a):
    """The GRPO family's keys: read by algo.name = 'grpo' only, each where it means something."""
    algo = SCHEMA["algo"]
    changed = [key for key in GRPO_KEYS if a[key] != algo[key].default]
    if a["name"] != "grpo":
        if changed:
            raise ConfigError(f"algo.{changed[0]} is an option of algo.name = 'grpo' (the GRPO family), not of "
                              f"{a['name']!r}; drop it or set algo.name = 'grpo'")
        return
    for key in PG_KEYS:
        if a[key] != algo[key].default:
            raise ConfigError(f"algo.{key} is an option of pg and pg_batch; grpo's advantages are set by "
                              "algo.adv_estimator, algo.num_generations and algo.scale_rewards")
    if a["reward_type"] != "outcome":
        raise ConfigError(f"algo.reward_type must be 'outcome' for algo.name = 'grpo' (an outcome-reward method), "
                          f"got {a['reward_type']!r}; process rewards: algo.name = 'pg_batch'")
    G, est = a["num_generations"], a["adv_estimator"]
    if a["batch"] % G:
        raise ConfigError(f"algo.batch ({a['batch']}) must be a multiple of algo.num_generations ({G}): a step "
                          "takes batch / num_generations contexts, num_generations samples each")
    if est in ("grpo", "rloo") and G < 2:
        raise ConfigError(f"algo.num_generations must be >= 2 for adv_estimator {est!r} (a group of one sample has "
                          "zero advantage, so nothing would ever be learned)")
    if est == "pass_k" and a["pkpo_k"] > G:
        raise ConfigError(f"algo.pkpo_k must be an integer in [1, {G}] (algo.num_generations), got {a['pkpo_k']}")
    if est != "pass_k" and a["pkpo_k"] != algo["pkpo_k"].default:
        raise ConfigError(f"algo.pkpo_k is read by adv_estimator = 'pass_k' only (got adv_estimator {est!r})")
    if est in ("raft", "pass_k") and a["scale_rewards"] != algo["scale_rewards"].default:
        raise ConfigError(f"algo.scale_rewards is read by adv_estimator 'grpo' and 'rloo' only (got {est!r}, whose "
                          "advantages have no std scaling)")
    if a["max_completion_length"]:
        if a["loss_type"] != "dr_grpo":
            raise ConfigError("algo.max_completion_length is read by loss_type = 'dr_grpo' only (got "
                              f"{a['loss_type']!r})")
        if a["max_completion_length"] < t["N"]:
            raise ConfigError(f"algo.max_completion_length must be 0 (task.N) or an integer >= task.N ({t['N']}), "
                              f"got {a['max_completion_length']}")


def load(path):
    """The TOML file at ``path`` as a dict; every way it can be unreadable is one ``ConfigError``."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory; expected a TOML file") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {exc.start}); TOML files are UTF-8") from None
    return parse_toml(text, f"config file {path}")


# Tables and arrays nested deeper than this are refused. A run config is 2 deep ([section] key = value), a sweep
# file or an experiment spec 3 ([grid] "task.N" = [1, 2], [[sets]], [config.task]), a list-valued grid key 4. The
# parser recurses per level of arrays and inline tables (a thousand levels overflow Python's stack), and so would
# every later walk of the parsed value (copy.deepcopy, the repr in an error message, json.dumps).
MAX_DEPTH = 32
# A TOML string or comment, to blank out before looking for long dotted keys (a dot in them is no key separator).
_STRING_OR_COMMENT = re.compile(r'''"""(?:\\.|[^\\])*?"""|\'\'\'.*?\'\'\'|"(?:\\.|[^"\\\n])*"|'[^'\n]*'|#[^\n]*''',
                                re.S)
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def parse_toml(text, what):
    """``text`` (the TOML document ``what``, e.g. "config file F.toml") as a dict; invalid or too deeply nested
    TOML is one ``ConfigError`` naming ``what``."""
    try:
        return _loads(text, what)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{what} is not valid TOML: {exc}") from None


def parse_value(name, raw):
    """The ``--set`` value ``raw`` of ``name`` read as TOML (``5``, ``0.1``, ``[1, 2]``, ``"x"``, ``true``), a bare
    word that is no TOML as the string itself; a value nested too deeply is refused naming ``--set name``."""
    try:
        return _loads(f"v = {raw}", f"--set {name}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def _loads(text, what):
    """``tomllib.loads`` (its ``TOMLDecodeError`` passes through) that refuses, as a ``ConfigError`` naming
    ``what``, nesting deeper than ``MAX_DEPTH``."""
    if _longest_dotted_key(text) > MAX_DEPTH:
        # tomllib's time (a header) and memory (a key = value line) grow with the square of a dotted key's length:
        # a 100 000-part key takes more than 24 GiB, so such a key is refused before it is parsed
        raise ConfigError(_too_deep(what))
    try:
        data = tomllib.loads(text)
    except RecursionError:
        raise ConfigError(_too_deep(what)) from None
    check_depth(data, what)
    return data


def _longest_dotted_key(text):
    """The parts of the longest chain ``a.b.c…`` of bare (or quoted) keys in ``text`` (0 for none longer than two),
    outside strings and comments. A split on the dots, not a pattern over the chain, finds it, so the time stays
    linear in the text whatever it holds."""
    pieces = _STRING_OR_COMMENT.sub(lambda m: "" if m.group().startswith("#") else "s", text).split(".")
    longest = run = 0
    for piece in pieces[1:-1]:          # the pieces between two dots: a key part when nothing else is in it
        run = run + 1 if _BARE_KEY.fullmatch(piece.strip(" \t")) else 0
        longest = max(longest, run)
    return longest + 2 if longest else 0


def check_depth(value, what):
    """Refuse ``value`` (dicts and lists, as TOML parses them) nested more than ``MAX_DEPTH`` levels. Iterative
    and stops at the first level too deep, so it cannot itself overflow the stack."""
    stack = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (dict, list)):
            if depth == MAX_DEPTH:
                raise ConfigError(_too_deep(what))
            stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))


def _too_deep(what):
    return (f"{what} is nested too deeply: more than {MAX_DEPTH} levels of tables and arrays (a run config is 2 "
            "deep: [section] then key = value)")


def apply_overrides(user, sets):
    """``section.key=value`` strings (value parsed as TOML, bare words as strings) into ``user`` (a dict of
    sections or a ``Spec``); returns a new dict."""
    if isinstance(user, Spec):
        user = user.to_dict()
    if not isinstance(user, dict):
        raise ConfigError(f"config must be a table of sections (task, base, algo, run), got {type(user).__name__}")
    check_depth(user, "config")         # before any message below holds a repr of it
    for sec, vals in user.items():
        if not isinstance(vals, dict):
            accepted = f"a table of keys ([{sec}] with key = value lines)"
            if sec not in SCHEMA:
                raise ConfigError(f"unknown config entry {sec!r} at the top level; accepted: the sections "
                                  f"{', '.join(SCHEMA)}, each {accepted}")
            raise ConfigError(f"[{sec}] must be {accepted}, got {vals!r}")
    user = {sec: dict(vals) for sec, vals in user.items()}
    if sets is not None and (isinstance(sets, str) or not isinstance(sets, (list, tuple))):
        raise ConfigError(f"sets must be a list of 'section.key=value' strings, got {sets!r}")
    for item in sets or ():
        if not isinstance(item, str):
            raise ConfigError(f"sets must be a list of 'section.key=value' strings, got the item {item!r}")
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ConfigError(f"--set expects section.key=value, got {item!r}")
        name, raw = item.split("=", 1)
        sec, key = name.strip().split(".", 1)
        user.setdefault(sec, {})[key] = parse_value(name.strip(), raw)
    return user


def to_toml(config):
    """Serialise a resolved config (a ``Spec``, or flat sections of scalars and number lists)."""
    if isinstance(config, Spec):
        config = config.to_dict()
    lines = []
    for sec, values in config.items():
        lines.append(f"[{sec}]")
        for key, value in values.items():
            lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return str(value)


def reference_table():
    """Markdown table of every key (docs/config.md's reference table is generated from this)."""
    rows = ["| key | default | accepted | meaning |", "|---|---|---|---|"]
    for sec, keys in SCHEMA.items():
        for key, spec in keys.items():
            rows.append(f"| `{sec}.{key}` | `{_toml_value(spec.default)}` | {spec.accepted()} | {spec.doc} |")
    return "\n".join(rows)


def default_experiment(sets=()):
    """The default experiment (``DEFAULT_EXPERIMENT``) as a user config for the overrides ``sets``.

    Its [algo] section belongs to pg_batch: when ``sets`` switch ``algo.name`` to another algorithm, that
    section is dropped, so the new algorithm starts from the schema's defaults (plus any ``algo.*`` in
    ``sets``) while the task, base and run settings stay — ``--set algo.name=pg`` gives on-policy PG on the
    default task."""
    user = {sec: dict(vals) for sec, vals in DEFAULT_EXPERIMENT.items()}
    name = None
    for item in sets or ():
        if isinstance(item, str) and "=" in item and item.split("=", 1)[0].strip() == "algo.name":
            name = item.split("=", 1)[1].strip().strip("'\"")
    if name is not None and name != user["algo"]["name"]:
        user["algo"] = {}
    return user


# The default experiment (`onlinepg run` with no CONFIG); data/configs/default.toml is the same config.
DEFAULT_EXPERIMENT = {
    "task": {"kind": "teacher", "d": 16, "k": 16, "N": 16, "contexts": "mixture", "centres": 16, "seed": 0},
    "base": {"kind": "pretrain", "steps": 200, "batch": 256, "lr": 0.1, "lr_rule": "adagrad"},
    "algo": {"name": "pg_batch", "reward_type": "outcome", "reward": "pm1", "baseline": "batch_mean",
             "lr_rule": "adagrad", "lr": 0.1, "batch": 256},
    "run": {"rounds": 1000, "seed": 0, "eval_every": 25, "tracked": "centres"},
}
