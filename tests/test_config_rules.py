"""Every validation rule of ``onlinepg.config`` has a case here, and its message names its field.

* Key checks: generated from ``config.SCHEMA`` — for every key, a value of the wrong type, outside each bound
  (an open bound's own value included), a non-finite float, a string outside the choices; the message starts
  with ``section.key`` and states the accepted values. The values on a closed bound are accepted.
* Cross-field rules (``_cross_checks``): one hand-written case each, with the nearest config that passes, so
  the rule is shown to sit exactly where it should. ``test_every_cross_rule_has_a_case`` reads the source of
  ``_cross_checks`` and fails when a ``raise`` in it is reached by none of the cases (a rule added untested).
* The structure of a config (sections, keys, overrides), resume with a changed config, and the memory budget.
"""
import ast
import copy
import inspect
import math
import textwrap

import pytest

from onlinepg import config as C
from onlinepg.errors import ConfigError


# ------------------------------------------------------------------------------------------- Key checks


def _bad_values(spec):
    """[(label, value)] that ``spec`` must reject."""
    bad = []
    if spec.kind is str:
        bad += [("type", 5), ("type-list", ["a"])]
        if spec.choices:
            bad.append(("choice", "no-such-" + spec.choices[0]))
    elif spec.kind is bool:
        bad += [("type-int", 1), ("type-str", "true")]
    elif spec.kind is list:
        bad += [("type", "1, 2"), ("bool-item", [True]), ("nan-item", [math.nan]), ("str-item", ["0.5"])]
    else:
        bad += [("type-str", "3"), ("type-bool", True)]
        if spec.kind is int:
            bad.append(("type-float", 1.5))
        else:
            bad += [("nan", math.nan), ("inf", math.inf)]
        step = 1 if spec.kind is int else 0.5
        if spec.lo is not None:
            bad.append(("below-lo", spec.kind(spec.lo - step)))
            if spec.open_lo:
                bad.append(("at-open-lo", spec.kind(spec.lo)))
        if spec.hi is not None:
            bad.append(("above-hi", spec.kind(spec.hi + step)))
            if spec.open_hi:
                bad.append(("at-open-hi", spec.kind(spec.hi)))
    return bad


KEY_CASES = [pytest.param(sec, key, value, id=f"{sec}.{key}-{label}")
             for sec, keys in C.SCHEMA.items() for key, spec in keys.items()
             for label, value in _bad_values(spec)]


@pytest.mark.parametrize("sec,key,value", KEY_CASES)
def test_key_check_rejects_and_names_the_key(sec, key, value):
    with pytest.raises(ConfigError) as err:
        C.resolve({sec: {key: value}})
    msg = str(err.value)
    assert msg.startswith(f"{sec}.{key} must be "), msg
    spec = C.SCHEMA[sec][key]
    assert ("list of finite numbers" if spec.kind is list else spec.accepted()) in msg


@pytest.mark.parametrize("sec,key", [(s, k) for s, keys in C.SCHEMA.items() for k in keys])
def test_key_check_accepts_its_default_and_closed_bounds(sec, key):
    spec = C.SCHEMA[sec][key]
    assert spec.check(f"{sec}.{key}", spec.default) == spec.default
    for bound, is_open in ((spec.lo, spec.open_lo), (spec.hi, spec.open_hi)):
        if bound is not None and not is_open:
            assert spec.check(f"{sec}.{key}", spec.kind(bound)) == spec.kind(bound)
    if spec.kind is float:                        # an integer in range is taken, as a float
        for v in (0, 1, 2, 10):
            try:
                got = spec.check(f"{sec}.{key}", v)
            except ConfigError:
                continue
            assert type(got) is float and got == v


# -------------------------------------------------------------------------------------- cross-field rules

TEACHER_MIX = {"kind": "teacher", "contexts": "mixture", "d": 4, "centres": 4}
CELLS = {"kind": "cells", "k": 3, "N": 3, "M": 6}

# (id, config that breaks the rule, field the message must name, the nearest config that passes)
CROSS = [
    ("pass-k-not-increasing", {"run": {"pass_k": [1, 8, 4]}}, "run.pass_k", {"run": {"pass_k": [1, 4, 8]}}),
    ("pass-k-not-integer", {"run": {"pass_k": [1.5]}}, "run.pass_k", {"run": {"pass_k": [2]}}),
    ("centres>d", {"task": dict(TEACHER_MIX, centres=5)}, "task.centres", {"task": TEACHER_MIX}),
    ("teacher-pool-missing", {"task": {"kind": "teacher", "stream": "cycle", "pool": 0}}, "task.pool",
     {"task": {"kind": "teacher", "stream": "cycle", "pool": 1}}),
    ("alpha-base-on-teacher", {"task": {"kind": "teacher"}, "base": {"kind": "alpha"}}, "base.kind",
     {"task": CELLS, "base": {"kind": "alpha"}}),
    ("staircase-on-teacher", {"task": {"kind": "teacher"}, "base": {"kind": "staircase"}}, "base.kind",
     {"task": CELLS, "base": {"kind": "staircase"}}),
    ("bottleneck-on-teacher", {"task": {"kind": "teacher"}, "base": {"kind": "bottleneck"}}, "base.kind",
     {"task": CELLS, "base": {"kind": "bottleneck"}}),
    ("constant-one-direction", {"task": {"kind": "constant", "M": 1}}, "task.M",
     {"task": {"kind": "constant", "M": 2}}),
    ("load-without-path", {"base": {"kind": "load"}}, "base.path",
     {"base": {"kind": "load", "path": "w.npz"}}),
    ("staircase-lengths", {"task": CELLS, "base": {"kind": "staircase", "alphas": [0.1, 0.2], "fractions": [1.0]}},
     "base.alphas", {"task": CELLS, "base": {"kind": "staircase", "alphas": [0.1, 0.2], "fractions": [1.0, 2.0]}}),
    ("staircase-empty", {"task": CELLS, "base": {"kind": "staircase", "alphas": [], "fractions": []}},
     "base.alphas", {"task": CELLS, "base": {"kind": "staircase", "alphas": [0.1], "fractions": [1.0]}}),
    ("staircase-alpha-range", {"task": CELLS, "base": {"kind": "staircase", "alphas": [0.1, 1.0]}}, "base.alphas",
     {"task": CELLS, "base": {"kind": "staircase", "alphas": [0.1, 0.999]}}),
    ("staircase-fraction-range", {"task": CELLS, "base": {"kind": "staircase", "fractions": [1.0, 0.0]}},
     "base.fractions", {"task": CELLS, "base": {"kind": "staircase", "fractions": [1.0, 0.01]}}),
    ("bottleneck-position", {"task": CELLS, "base": {"kind": "bottleneck", "position": 3}}, "base.position",
     {"task": CELLS, "base": {"kind": "bottleneck", "position": 2}}),
    ("perceptron-N", {"task": {"N": 2}, "algo": {"name": "perceptron"}}, "task.N",
     {"task": {"N": 1}, "algo": {"name": "perceptron"}}),
    ("iw_clip-below-1", {"algo": {"name": "pg", "iw_clip": 0.99}}, "algo.iw_clip",
     {"algo": {"name": "pg", "iw_clip": 1.0}}),
    ("group-not-dividing-batch", {"algo": {"name": "pg_batch", "baseline": "group_mean", "group_size": 3,
                                           "batch": 8}}, "algo.batch",
     {"algo": {"name": "pg_batch", "baseline": "group_mean", "group_size": 4, "batch": 8}}),
    ("loo-group-not-dividing-batch", {"algo": {"name": "pg_batch", "baseline": "loo", "group_size": 3,
                                               "batch": 8}}, "algo.batch",
     {"algo": {"name": "pg_batch", "baseline": "loo", "group_size": 2, "batch": 8}}),
    ("group_mean-group-of-1", {"algo": {"name": "pg_batch", "baseline": "group_mean", "group_size": 1}},
     "algo.group_size", {"algo": {"name": "pg_batch", "baseline": "group_mean", "group_size": 2, "batch": 2}}),
    ("pg-loo-group-of-1", {"algo": {"name": "pg", "baseline": "loo", "group_size": 1}}, "algo.group_size",
     {"algo": {"name": "pg", "baseline": "loo", "group_size": 2}}),
    ("pg-batch_mean-group-of-1", {"algo": {"name": "pg", "baseline": "batch_mean", "group_size": 1}},
     "algo.group_size", {"algo": {"name": "pg", "baseline": "batch_mean", "group_size": 2}}),
    ("std_scale-without-baseline", {"algo": {"name": "pg", "std_scale": True, "group_size": 2}}, "algo.std_scale",
     {"algo": {"name": "pg", "std_scale": True, "group_size": 2, "baseline": "group_mean"}}),
    # the GRPO family (config._grpo_checks)
    ("grpo-key-with-pg", {"algo": {"name": "pg", "num_iterations": 2}}, "algo.num_iterations",
     {"algo": {"name": "grpo", "num_iterations": 2, "batch": 8}}),
    ("grpo-key-with-pg_batch", {"algo": {"name": "pg_batch", "beta": 0.1}}, "algo.beta",
     {"algo": {"name": "grpo", "beta": 0.1, "batch": 8}}),
    ("pg-key-with-grpo", {"algo": {"name": "grpo", "batch": 8, "baseline": "group_mean"}}, "algo.baseline",
     {"algo": {"name": "grpo", "batch": 8}}),
    ("grpo-process-reward", {"algo": {"name": "grpo", "batch": 8, "reward_type": "process"}}, "algo.reward_type",
     {"algo": {"name": "grpo", "batch": 8, "reward_type": "outcome"}}),
    ("grpo-generations-not-dividing-batch", {"algo": {"name": "grpo", "batch": 12, "num_generations": 8}},
     "algo.batch", {"algo": {"name": "grpo", "batch": 16, "num_generations": 8}}),
    ("grpo-group-of-1", {"algo": {"name": "grpo", "batch": 8, "num_generations": 1}}, "algo.num_generations",
     {"algo": {"name": "grpo", "batch": 8, "num_generations": 1, "adv_estimator": "raft"}}),
    ("pkpo-k-above-group", {"algo": {"name": "grpo", "batch": 8, "num_generations": 4, "adv_estimator": "pass_k",
                                     "pkpo_k": 5}}, "algo.pkpo_k",
     {"algo": {"name": "grpo", "batch": 8, "num_generations": 4, "adv_estimator": "pass_k", "pkpo_k": 4}}),
    ("pkpo-k-unread", {"algo": {"name": "grpo", "batch": 8, "pkpo_k": 2}}, "algo.pkpo_k",
     {"algo": {"name": "grpo", "batch": 8, "pkpo_k": 2, "adv_estimator": "pass_k"}}),
    ("scale-rewards-unread", {"algo": {"name": "grpo", "batch": 8, "adv_estimator": "raft", "scale_rewards": "none"}},
     "algo.scale_rewards", {"algo": {"name": "grpo", "batch": 8, "adv_estimator": "rloo", "scale_rewards": "none"}}),
    ("max-completion-length-unread", {"algo": {"name": "grpo", "batch": 8, "max_completion_length": 64}},
     "algo.max_completion_length",
     {"algo": {"name": "grpo", "batch": 8, "max_completion_length": 64, "loss_type": "dr_grpo"}}),
    ("max-completion-length-below-N", {"task": {"N": 8}, "algo": {"name": "grpo", "batch": 8, "loss_type": "dr_grpo",
                                                                  "max_completion_length": 7}},
     "algo.max_completion_length", {"task": {"N": 8}, "algo": {"name": "grpo", "batch": 8, "loss_type": "dr_grpo",
                                                               "max_completion_length": 8}}),
]
# rules that only exist in some versions of config.py (added concurrently): cases kept here, skipped when the
# rule is absent (the nearest passing config still has to pass)
OPTIONAL_CROSS = [
    ("pg_batch-group-without-group-baseline", {"algo": {"name": "pg_batch", "baseline": "batch_mean",
                                                        "group_size": 4, "batch": 8}}, "algo.group_size",
     {"algo": {"name": "pg_batch", "baseline": "batch_mean", "group_size": 1, "batch": 8}}),
    ("pg_batch-group-without-baseline", {"algo": {"name": "pg_batch", "baseline": "none", "group_size": 2,
                                                  "batch": 8}}, "algo.group_size",
     {"algo": {"name": "pg_batch", "baseline": "none", "batch": 8}}),
    ("cells-pool>M", {"task": dict(CELLS, stream="cycle", pool=7)}, "task.pool",
     {"task": dict(CELLS, stream="cycle", pool=6)}),
]


def _raise_line(exc):
    """(function, line) in config.py of the ``raise`` that produced ``exc``."""
    tb, where = exc.__traceback__, None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == C.__file__:
            where = (tb.tb_frame.f_code.co_name, tb.tb_lineno)
        tb = tb.tb_next
    return where


def _check_cross(user, field, ok, optional=False):
    try:
        C.resolve(copy.deepcopy(user))
    except ConfigError as exc:
        assert field in str(exc), f"the message does not name {field}: {exc}"
    else:
        if optional:
            pytest.skip("rule not present in this config.py")
        pytest.fail(f"accepted a config breaking the rule on {field}: {user}")
    C.resolve(copy.deepcopy(ok))                 # the nearest valid config passes: the rule is not too wide


@pytest.mark.parametrize("user,field,ok", [pytest.param(u, f, o, id=i) for i, u, f, o in CROSS])
def test_cross_rule(user, field, ok):
    _check_cross(user, field, ok)


@pytest.mark.parametrize("user,field,ok", [pytest.param(u, f, o, id=i) for i, u, f, o in OPTIONAL_CROSS])
def test_cross_rule_added_later(user, field, ok):
    _check_cross(user, field, ok, optional=True)


def _cross_raise_lines():
    lines = set()
    for fn in (C._cross_checks, C._grpo_checks):
        src, first = inspect.getsourcelines(fn)
        tree = ast.parse(textwrap.dedent("".join(src)))
        lines |= {(fn.__name__, node.lineno + first - 1) for node in ast.walk(tree) if isinstance(node, ast.Raise)}
    return lines


def test_every_cross_rule_has_a_case():
    reached = set()
    for _, user, field, ok in CROSS + OPTIONAL_CROSS:
        try:
            C.resolve(copy.deepcopy(user))
        except ConfigError as exc:
            reached.add(_raise_line(exc))
    missing = _cross_raise_lines() - reached
    lines = inspect.getsource(C).splitlines()
    assert not missing, "rules in config._cross_checks with no case in tests/test_config_rules.py:\n" + \
        "\n".join(f"  line {n}: {lines[n - 1].strip()}" for _, n in sorted(missing))


def test_rloo_is_another_name_for_the_loo_baseline():
    spec = C.resolve({"algo": {"name": "pg_batch", "baseline": "rloo", "group_size": 2, "batch": 8}})
    assert spec.algo.baseline == "loo" and spec.algo.group == 2


def test_loo_with_one_sample_per_context_is_accepted_in_pg_batch_only():
    """pg_batch + loo + group_size = 1 means leave-one-out over the whole batch (see test_loo_batch.py); the
    per-round pg has no batch to leave one out of, so there it is refused."""
    C.resolve({"algo": {"name": "pg_batch", "baseline": "loo", "group_size": 1, "batch": 8}})
    assert "whole batch" in C.SCHEMA["algo"]["baseline"].doc
    with pytest.raises(ConfigError, match="algo.group_size"):
        C.resolve({"algo": {"name": "pg", "baseline": "loo", "group_size": 1}})


@pytest.mark.parametrize("task,tracked", [({"kind": "teacher", "contexts": "rademacher"}, "test"),
                                          ({"kind": "cells"}, "test"),
                                          (TEACHER_MIX, "centres")])
def test_tracked_centres_falls_back_to_test_without_centres(task, tracked):
    assert C.resolve({"task": task}).run.tracked == tracked
    assert C.resolve({"task": task, "run": {"tracked": "none"}}).run.tracked == "none"


# ------------------------------------------------------------------------------------ structure, overrides


@pytest.mark.parametrize("user,message", [
    ([], "config must be a table of sections"),
    ({"tsk": {}}, "unknown config section [tsk]"),
    ({"task": 3}, "[task] must be a table of keys"),
    ({"task": {"dd": 3}}, "unknown key task.dd"),
], ids=["not-a-table", "unknown-section", "section-not-a-table", "unknown-key"])
def test_structure_errors(user, message):
    with pytest.raises(ConfigError) as err:
        C.resolve(user)
    assert message in str(err.value)


def test_override_errors():
    with pytest.raises(ConfigError, match="--set expects section.key=value"):
        C.apply_overrides({}, ["algo_lr=3"])
    with pytest.raises(ConfigError, match="--set expects section.key=value"):
        C.apply_overrides({}, ["algo.lr"])
    assert C.apply_overrides({}, ["algo.name=pg", "algo.lr=0.5", "base.alphas=[0.1, 0.2]"]) == \
        {"algo": {"name": "pg", "lr": 0.5}, "base": {"alphas": [0.1, 0.2]}}


def test_load_errors(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        C.load(tmp_path / "none.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[task\nk = 3\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        C.load(bad)


# ---------------------------------------------------------------------------------------------- resume


def test_resume_refuses_a_changed_config_and_leaves_the_folder_alone(tmp_path):
    from onlinepg.engine import run
    cfg = {"task": CELLS, "base": {"kind": "alpha"}, "algo": {"name": "best_of_m"},
           "run": {"rounds": 40, "eval_every": 20, "progress": False}}
    out = tmp_path / "r"
    run(cfg, out)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    for sets in (["algo.m=4"], ["run.rounds=80"], ["task.seed=1"], ["run.seed=1"]):
        with pytest.raises(ConfigError, match="differs"):
            run(cfg, out, resume=True, sets=sets)
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    run(cfg, out, resume=True, sets=["run.progress=true"], progress=False)   # progress is not part of the run


# ------------------------------------------------------------------------------------------ memory budget


def _limits():
    return pytest.importorskip("onlinepg.limits")


@pytest.mark.parametrize("user,fields", [
    ({"task": {"kind": "cells", "M": 10**7, "N": 8, "k": 16}}, "task.M × task.N × task.k"),
    ({"task": {"test_contexts": 10**9}}, "task.test_contexts"),
    ({"algo": {"name": "pg_batch", "batch": 10**9}}, "algo.batch"),
    ({"algo": {"name": "pg"}, "run": {"chunk": 10**9, "rounds": 10**9, "eval_every": 10**9}}, "run.chunk"),
    ({"base": {"kind": "pretrain", "batch": 10**9}}, "base.batch"),
    ({"task": {"stream": "cycle", "pool": 10**9}}, "task.pool"),
])
def test_memory_budget_names_the_field_of_the_largest_term(user, fields):
    limits = _limits()
    cfg = C.resolve(user)
    with pytest.raises(ConfigError) as err:
        limits.check(cfg, available=2**30)
    assert str(err.value).startswith(fields), str(err.value)
    limits.check(C.resolve({"task": {"d": 4, "k": 3, "N": 2, "centres": 4}}), available=2**30)


def test_engine_refuses_a_config_beyond_memory_before_writing(tmp_path):
    _limits()
    from onlinepg.engine import run
    out = tmp_path / "never"
    with pytest.raises(ConfigError, match="task.test_contexts"):
        run({"task": {"test_contexts": 2**62}, "run": {"progress": False}}, out)
    assert not out.exists() or not any(out.iterdir())
