"""Bad input, CLI and Python API: every case is refused with exit status 2 (``ConfigError`` from the API) and one
``onlinepg: error:`` line naming the field, and leaves no new file or folder behind (issue 10)."""
import os
import shutil

import numpy as np
import pytest

import onlinepg as op
from onlinepg import limits
from onlinepg.cli import main as cli
from onlinepg.engine import run
from onlinepg.lq import lq_report
from onlinepg.sweep import run_sweep

TINY = {"task": {"d": 4, "k": 4, "N": 3, "centres": 4}, "base": {"kind": "zero"}, "algo": {"name": "pg"},
        "run": {"rounds": 20, "eval_every": 10, "checkpoint_every": 10, "keep_checkpoints": 0, "progress": False}}
GIB = 2**30
DEEP = 1000                                     # levels: Python's recursion limit, far beyond config.MAX_DEPTH
DEEP_TABLE = "[" + ".".join(["a"] * DEEP) + "]\nx = 1\n"
DEEP_ARRAY = "[" * DEEP + "]" * DEEP
DEEP_INLINE = "{a = " * DEEP + "1" + "}" * DEEP
BIG = 10**26                                    # above 2^63: a Python / TOML integer, no int64


@pytest.fixture(scope="module")
def done_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bad") / "run"
    run(TINY, out)
    return out


@pytest.fixture
def ws(tmp_path, done_run, monkeypatch):
    """A working folder with every kind of bad file the cases refer to; the current directory is inside it."""
    (tmp_path / "not_utf8.toml").write_bytes(b"\xff\xfe[task]\nk = 3\n")
    (tmp_path / "scalar.toml").write_text("rounds = 5\n")
    (tmp_path / "section_scalar.toml").write_text("task = 5\n")
    (tmp_path / "broken.toml").write_text("[task\nk = \n")
    (tmp_path / "cfgdir").mkdir()
    (tmp_path / "file.txt").write_text("not a folder")
    (tmp_path / "thesis").mkdir()
    (tmp_path / "thesis" / "ch1.tex").write_text("precious")
    (tmp_path / "trunc.npz").write_bytes((done_run / "base.npz").read_bytes()[:700])
    shutil.copytree(done_run, tmp_path / "run")
    shutil.copytree(done_run, tmp_path / "corrupt")
    ckpt = sorted((tmp_path / "corrupt" / "checkpoints").glob("*.npz"))
    for c in ckpt:
        c.write_bytes(c.read_bytes()[:300])
    shutil.copytree(done_run, tmp_path / "emptycfg")
    (tmp_path / "emptycfg" / "config.toml").write_text("")
    (tmp_path / "sweep.toml").write_text('[sweep]\nseeds = 1\n[grid]\n"task.N" = [1]\n')
    (tmp_path / "big_sweep.toml").write_text('[grid]\n"task.test_contexts" = [100, 1000000000]\n')
    (tmp_path / "deep_table.toml").write_text(DEEP_TABLE)
    (tmp_path / "deep_array.toml").write_text(f"[run]\nrounds = {DEEP_ARRAY}\n")
    (tmp_path / "deep_inline.toml").write_text(f"[task]\nd = {DEEP_INLINE}\n")
    (tmp_path / "deep_dotted.toml").write_text("[task]\n" + ".".join(["a"] * 100000) + " = 1\n")
    (tmp_path / "deep_sweep.toml").write_text(f'[sweep]\nseeds = 1\n[grid]\n"task.N" = {DEEP_ARRAY}\n')
    (tmp_path / "big_rounds.toml").write_text(f"[run]\nrounds = {BIG}\n")
    (tmp_path / "big_seeds.toml").write_text(f"[task]\nseed = {BIG}\n[run]\nseed = {2**63}\n")
    (tmp_path / "big_grid.toml").write_text(f'[grid]\n"run.rounds" = [10, {BIG}]\n')
    (tmp_path / "big_sweep_seeds.toml").write_text(f"[sweep]\nseeds = {BIG}\n")
    (tmp_path / "long_sweep.toml").write_text(f'[grid]\n"run.rounds" = [10, {10**18}]\n')
    shutil.copytree(done_run, tmp_path / "deepcfg")
    (tmp_path / "deepcfg" / "config.toml").write_text(DEEP_TABLE)
    monkeypatch.chdir(tmp_path)
    # the memory check compares with a fixed 4 GiB, whatever this machine has free
    monkeypatch.setattr(limits, "available_bytes", lambda: 4 * GIB)
    return tmp_path


def tree(root):
    return sorted(os.path.relpath(os.path.join(d, n), root) for d, dirs, files in os.walk(root)
                  for n in dirs + files)


S = lambda *items: [a for i in items for a in ("--set", i)]  # noqa: E731

CLI_CASES = [
    # every config key: a value outside its accepted set names the key and the accepted values
    (["run", *S("task.kind=grid")], "task.kind must be one of 'teacher', 'cells'"),
    (["run", *S("task.d=0")], "task.d must be an integer in [1, inf)"),
    (["run", *S("task.k=1")], "task.k must be an integer in [2, inf)"),
    (["run", *S("task.N=0")], "task.N must be an integer in [1, inf)"),
    (["run", *S("task.contexts=gauss")], "task.contexts must be one of"),
    (["run", *S("task.centres=0")], "task.centres must be an integer in [1, inf)"),
    (["run", *S("task.sigma=0")], "task.sigma must be a number in (0, inf)"),
    (["run", *S("task.normalize=maybe")], "task.normalize must be true or false"),
    (["run", *S("task.M=-1")], "task.M must be an integer in [0, inf)"),
    (["run", *S("task.gamma=1")], "task.gamma must be a number in (0, 1)"),
    (["run", *S("task.seed=-1")], "task.seed must be an integer in [0,"),
    (["run", *S("task.stream=random")], "task.stream must be one of"),
    (["run", *S("task.pool=-1")], "task.pool must be an integer in [0, inf)"),
    (["run", *S("task.test_contexts=0")], "task.test_contexts must be an integer in [1, inf)"),
    (["run", *S("base.kind=random")], "base.kind must be one of"),
    (["run", *S("base.steps=0")], "base.steps must be an integer in [1, inf)"),
    (["run", *S("base.batch=0")], "base.batch must be an integer in [1, inf)"),
    (["run", *S("base.lr=0")], "base.lr must be a number in (0, inf)"),
    (["run", *S("base.lr_rule=sgd")], "base.lr_rule must be one of"),
    (["run", *S("base.alpha=1")], "base.alpha must be a number in (0, 1)"),
    (["run", *S("base.alphas=[a]")], "base.alphas must be a list of finite numbers"),
    (["run", *S("base.position=-1")], "base.position must be an integer in [0, inf)"),
    (["run", *S("base.easy=1")], "base.easy must be a number in (0, 1)"),
    (["run", *S("algo.name=ppo")], "algo.name must be one of"),
    (["run", *S("algo.lr_rule=sgd")], "algo.lr_rule must be one of"),
    (["run", *S("algo.lr=-1")], "algo.lr must be a number in (0, inf)"),
    (["run", *S("algo.behaviour=greedy")], "algo.behaviour must be one of"),
    (["run", *S("algo.eps=2")], "algo.eps must be a number in [0, 1]"),
    (["run", *S("algo.reward=binary")], "algo.reward must be one of '01', 'pm1'"),
    (["run", *S("algo.baseline=mean")], "algo.baseline must be one of"),
    (["run", *S("algo.group_size=0")], "algo.group_size must be an integer in [1, inf)"),
    (["run", *S("algo.std_scale=1")], "algo.std_scale must be true or false"),
    (["run", *S("algo.iw_clip=0.5")], "algo.iw_clip must be 0 (off) or a number >= 1"),
    (["run", *S("run.pass_k=[1,4,2]")], "run.pass_k must be a non-empty list of increasing integers"),
    (["run", *S("run.pass_k=[0.5,2]")], "run.pass_k must be a non-empty list of increasing integers"),
    (["run", *S("run.pass_k=[]")], "run.pass_k must be a non-empty list of increasing integers"),
    (["run", *S("run.pass_k=[-1]")], "run.pass_k must be a non-empty list of increasing integers"),
    (["run", *S("run.support_zeta=1")], "run.support_zeta must be a number in (0, 1)"),
    (["run", *S("run.support_k=0")], "run.support_k must be an integer in [1, inf)"),
    (["run", *S("run.delta_se_k=0")], "run.delta_se_k must be an integer in [1, inf)"),
    (["run", *S("algo.batch=0")], "algo.batch must be an integer in [1, inf)"),
    (["run", *S("algo.m=0")], "algo.m must be an integer in [1, inf)"),
    (["run", *S("algo.m_tok=0")], "algo.m_tok must be an integer in [1, inf)"),
    (["run", *S("algo.variant=greedy")], "algo.variant must be one of"),
    (["run", *S("algo.reward_type=dense")], "algo.reward_type must be one of 'outcome', 'process'"),
    (["run", *S("run.rounds=0")], "run.rounds must be an integer in [1, inf)"),
    (["run", *S("run.rounds=ten")], "run.rounds must be an integer"),
    (["run", *S("run.seed=-1")], "run.seed must be an integer in [0,"),
    (["run", *S("run.eval_every=0")], "run.eval_every must be an integer in [1, inf)"),
    (["run", *S("run.target_error=1")], "run.target_error must be a number in [0, 1)"),
    (["run", *S("run.trace_every=0")], "run.trace_every must be an integer in [1, inf)"),
    (["run", *S("run.chunk=0")], "run.chunk must be an integer in [1, inf)"),
    (["run", *S("run.checkpoint_every=-1")], "run.checkpoint_every must be an integer in [0, inf)"),
    (["run", *S("run.keep_checkpoints=-1")], "run.keep_checkpoints must be an integer in [0, inf)"),
    (["run", *S("run.tracked=all")], "run.tracked must be one of"),
    (["run", *S("run.tracked_count=0")], "run.tracked_count must be an integer in [1, inf)"),
    (["run", *S("run.progress=2")], "run.progress must be true or false"),
    (["run", *S("run.roundz=10")], "unknown key run.roundz; accepted:"),
    (["run", *S("tusk.N=1")], "unknown config section [tusk]; accepted:"),
    (["run", *S("rounds=5")], "--set expects section.key=value"),
    # settings that only make sense together
    (["run", *S("task.centres=20")], "task.centres must be <= task.d"),
    (["run", *S("task.stream=cycle")], "task.pool must be an integer >= 1"),
    (["run", *S("base.kind=alpha")], "base.kind 'alpha' needs task.kind = 'cells'"),
    (["run", *S("base.kind=load")], "base.path must name a weights file"),
    (["run", *S("base.kind=load", "base.path=missing.npz")], "base.path: weights file not found"),
    (["run", *S("base.kind=load", "base.path=trunc.npz")], "base.path: trunc.npz is not an onlinepg weights file"),
    (["run", *S("base.kind=load", "base.path=cfgdir")], "base.path: weights file cfgdir is a directory"),
    (["run", *S("algo.name=perceptron")], "algo.name 'perceptron' needs task.N = 1"),
    (["run", *S("algo.group_size=4")], "algo.group_size must be 1 for pg_batch with baseline 'batch_mean'"),
    (["run", *S("algo.baseline=none", "algo.group_size=2")], "algo.group_size must be 1 for pg_batch"),
    (["run", *S("algo.baseline=group_mean", "algo.group_size=3")], "algo.batch (256) must be a multiple of"),
    (["run", *S("algo.baseline=none", "algo.std_scale=true")], "algo.std_scale needs a baseline"),
    (["run", *S("task.kind=cells", "task.M=5", "task.stream=cycle", "task.pool=9", "algo.name=pg",
                "base.kind=zero")], "task.pool must be an integer in [0, 5]"),
    (["run", *S("task.kind=cells", "base.kind=staircase", "base.alphas=[0.1]", "algo.name=pg")],
     "base.alphas and base.fractions must be"),
    (["run", *S("task.kind=cells", "base.kind=bottleneck", "base.position=16", "algo.name=pg")],
     "base.position must be an integer in [0, 15]"),
    # sizes that cannot fit in memory (4 GiB available in these tests)
    (["run", *S("task.N=1000000")], "task.N"),
    (["run", *S("task.k=1000000000")], "task.k"),
    (["run", *S("task.kind=cells", "task.M=1000000000", "algo.name=pg", "base.kind=zero")], "task.M"),
    (["run", *S("task.test_contexts=1000000000")], "task.test_contexts"),
    # integers outside int64 (Python and TOML integers have no bound): the field and its accepted range
    (["run", *S(f"run.rounds={BIG}")], f"run.rounds must be an integer in [1, 2^63 - 1], got {BIG}"),
    (["run", *S(f"run.seed={2**63}")], f"run.seed must be an integer in [0, 2^63 - 1], got {2**63}"),
    (["run", *S(f"task.seed={BIG}")], f"task.seed must be an integer in [0, 2^63 - 1], got {BIG}"),
    (["run", *S(f"task.d={2**63}")], f"task.d must be an integer in [1, 2^63 - 1], got {2**63}"),
    (["run", *S(f"run.eval_every={BIG}")], "run.eval_every must be an integer in [1, 2^63 - 1]"),
    (["run", *S(f"task.offset={2**63}")], "task.offset must be an integer in [0, 2^62]"),
    (["run", "big_rounds.toml"], f"run.rounds must be an integer in [1, 2^63 - 1], got {BIG}"),
    (["run", "big_seeds.toml"], f"task.seed must be an integer in [0, 2^63 - 1], got {BIG}"),
    (["lq", "run", "--contexts", str(BIG)], "contexts must be an integer in [1, 2^63 - 1]"),
    # work no run finishes (more than limits.MAX_TOKENS tokens): the field, and the value that would do
    (["run", *S("run.rounds=1000000000000000000")], "run.rounds × algo.batch × task.N too large"),
    (["run", *S("algo.name=pg", "run.rounds=1000000000000000")], "lower run.rounds to at most 62500000000000"),
    (["run", *S("base.steps=1000000000000000")], "base.steps × base.batch × task.N too large"),
    # TOML nested too deeply (tables, arrays, inline tables, a dotted key): the file or --set, never a traceback
    (["run", "deep_table.toml"], "config file deep_table.toml is nested too deeply: more than 32 levels"),
    (["run", "deep_array.toml"], "config file deep_array.toml is nested too deeply"),
    (["run", "deep_inline.toml"], "config file deep_inline.toml is nested too deeply"),
    (["run", "deep_dotted.toml"], "config file deep_dotted.toml is nested too deeply"),
    (["run", *S(f"run.rounds={DEEP_ARRAY}")], "--set run.rounds is nested too deeply"),
    (["run", *S(f"task.d={DEEP_INLINE}")], "--set task.d is nested too deeply"),
    (["run", "--out", "deepcfg", "--resume"], "--resume: config file deepcfg/config.toml is nested too deeply"),
    (["lq", "run", "--config", "deep_table.toml"], "deep_table.toml is nested too deeply"),
    # config files
    (["run", "cfgdir"], "config file cfgdir is a directory"),
    (["run", "not_utf8.toml"], "config file not_utf8.toml is not UTF-8"),
    (["run", "scalar.toml"], "unknown config entry 'rounds' at the top level"),
    (["run", "section_scalar.toml"], "[task] must be a table of keys"),
    (["run", "broken.toml"], "config file broken.toml is not valid TOML"),
    (["run", "missing.toml"], "config file not found: missing.toml"),
    # output folders
    (["run", "--out", "file.txt"], "--out: file.txt is a file, not a folder"),
    (["run", "--out", "/proc/onlinepg-test"], "--out: /proc/onlinepg-test is under /proc"),
    (["run", "--out", "/sys/onlinepg-test"], "--out: /sys/onlinepg-test is under /sys"),
    (["run", "--out", "thesis"], "--out: folder thesis is not empty"),
    (["run", "--out", "thesis", "--overwrite"], "--overwrite: thesis is not a run folder"),
    (["run", "--out", "run", "--resume", "--overwrite"], "--resume and --overwrite exclude each other"),
    (["run", "--resume"], "--resume needs --out DIR"),
    (["run", "--out", "nowhere", "--resume"], "--resume: nowhere holds no run (config.toml missing)"),
    (["run", "--out", "emptycfg", "--resume"], "--resume: emptycfg/config.toml is incomplete"),
    (["run", "--out", "corrupt", "--resume"], "--resume: checkpoint corrupt/checkpoints/ckpt-"),
    (["run", "--out", "run", "--resume", *S("run.rounds=40")], "--resume: the config differs"),
    # lq
    (["lq", "trunc.npz", "--config", "run/config.toml"], "trunc.npz is not an onlinepg weights file"),
    (["lq", "run", "--out", "file.txt"], "--out: file.txt is a file"),
    (["lq", "run", "--out", "thesis"], "--out: folder thesis is not empty"),
    (["lq", "run", "--out", "thesis", "--overwrite"], "--overwrite: thesis is not an lq folder"),
    (["lq", "run", "--out", "/proc/onlinepg-test"], "--out: /proc/onlinepg-test is under /proc"),
    (["lq", "run", "--eps", "0"], "eps must be finite numbers in (0, 1)"),
    (["lq", "run", "--contexts", "0"], "contexts must be an integer >= 1"),
    (["lq", "missing"], "RUN_DIR_or_WEIGHTS: missing does not exist"),
    (["lq", "run", "--config", "cfgdir"], "--config: cfgdir is not a file"),
    # plot
    (["plot", "thesis"], "RUN_DIR: thesis is not a run folder"),
    (["plot", "run", "--out", "file.txt"], "--out: file.txt is a file"),
    (["plot", "run", "--out", "thesis", "--overwrite"], "--overwrite: thesis is not a figures folder"),
    # experiment
    (["experiment", "sgd-lr", "--scale", "small", "--seeds", "0"], "--seeds must be an integer >= 1"),
    (["experiment", "sgd-lr", "--scale", "small", "--set", "nope=1"], "unknown parameter 'nope'"),
    (["experiment", "sgd-lr", "--scale", "small", "--set", "algo.lr=-1"], "algo.lr must be a number"),
    (["experiment", "sgd-lr", "--scale", "small", "--set", f"run.seed={BIG}"],
     "run.seed must be an integer in [0, 2^63 - 1]"),
    (["experiment", "sgd-lr", "--scale", "small", "--set", f"run.rounds={DEEP_ARRAY}"],
     "--set run.rounds is nested too deeply"),
    (["experiment", "sgd-lr", "--out", "x", "--resume", "--overwrite"], "--resume and --overwrite exclude"),
    (["experiment", "sgd-lr", "--resume"], "--resume needs --out DIR"),
    (["experiment", "sgd-lr", "--out", "file.txt"], "--out: file.txt is a file"),
    (["experiment", "sgd-lr", "--scale", "small", "--out", "thesis"], "--out: folder thesis is not empty"),
    (["experiment", "sgd-lr", "--scale", "small", "--out", "thesis", "--overwrite"],
     "--overwrite: thesis is not an experiment folder"),
    (["experiment", "sgd-lr", "--scale", "small", "--out", "run", "--overwrite"],
     "--overwrite: run is not an experiment folder"),
    # sweep
    (["sweep", "cfgdir"], "config file cfgdir is a directory"),
    (["sweep", "not_utf8.toml"], "is not UTF-8"),
    (["sweep", "sweep.toml", "--out", "x", "--resume", "--overwrite"], "--resume and --overwrite exclude"),
    (["sweep", "sweep.toml", "--out", "file.txt"], "--out: file.txt is a file"),
    (["sweep", "big_sweep.toml", "--out", "x"], "cell runs/test_contexts=1000000000/seed=0: task.test_contexts"),
    (["sweep", "deep_table.toml", "--out", "x"], "config file deep_table.toml is nested too deeply"),
    (["sweep", "deep_sweep.toml", "--out", "x"], "config file deep_sweep.toml is nested too deeply"),
    (["sweep", "big_grid.toml", "--out", "x"],
     f"cell run.rounds={BIG}/seed=0: run.rounds must be an integer in [1, 2^63"),
    (["sweep", "big_sweep_seeds.toml", "--out", "x"], "sweep.seeds must be an integer in [1, 2^63 - 1]"),
    (["sweep", "long_sweep.toml", "--out", "x"],
     f"rounds={10**18}/seed=0: run.rounds × algo.batch × task.N too large"),
    (["sweep", "sweep.toml", "--out", "thesis", "--overwrite"], "thesis is not a sweep folder"),
    (["sweep", "sweep.toml", "--out", "run", "--overwrite"], "run is not a sweep folder"),
]


@pytest.mark.parametrize("argv, message", CLI_CASES, ids=[" ".join(a)[:60] for a, _ in CLI_CASES])
def test_cli_refuses_with_one_line_and_writes_nothing(argv, message, ws, capsys):
    before = tree(ws)
    code = cli(list(argv))
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2, (out, err)
    assert len(lines) == 1 and lines[0].startswith("onlinepg: error: "), err
    assert message in lines[0], lines[0]
    assert tree(ws) == before


def _experiment(*args, **kwargs):
    from onlinepg.experiments import run_experiment
    return run_experiment(*args, **kwargs)


def _api_cases():
    sweep = {"sweep": {"seeds": 1}, "grid": {"task.N": [1]}}
    deep_dict, deep_list = 1, 1
    for _ in range(DEEP):
        deep_dict, deep_list = {"a": deep_dict}, [deep_list]
    return [
        ("run(5)", lambda: run(5, "a"), "config must be None"),
        ("run(dict task=5)", lambda: run({"task": 5}, "a"), "[task] must be a table of keys"),
        ("run(list)", lambda: run([TINY], "a"), "config must be None"),
        ("run(out=None)", lambda: run(TINY, None), "--out must be a folder path"),
        ("run(out=7)", lambda: run(TINY, 7), "--out must be a folder path"),
        ("run(sets=str)", lambda: run(TINY, "a", sets="run.rounds=5"), "sets must be a list"),
        ("run(sets=[5])", lambda: run(TINY, "a", sets=[5]), "sets must be a list"),
        ("run(overwrite=str)", lambda: run(TINY, "a", overwrite="yes"), "overwrite must be true or false"),
        ("run(resume+overwrite)", lambda: run(TINY, "a", overwrite=True, resume=True), "exclude each other"),
        ("run(progress=str)", lambda: run(TINY, "a", progress="no"), "progress must be None, true or false"),
        ("run(N=np.float64(2.5))", lambda: run({**TINY, "task": {"N": np.float64(2.5)}}, "a"), "task.N must be"),
        ("op.run(5)", lambda: op.run(5, "a"), "config must be None"),
        ("run(deep table file)", lambda: run("deep_table.toml", "a"), "deep_table.toml is nested too deeply"),
        ("run(deep array file)", lambda: run("deep_array.toml", "a"), "deep_array.toml is nested too deeply"),
        ("run(deep inline file)", lambda: run("deep_inline.toml", "a"), "deep_inline.toml is nested too deeply"),
        ("run(deep dict)", lambda: run({"task": {"d": deep_dict}}, "a"), "config is nested too deeply"),
        ("run(deep list)", lambda: run({"task": deep_list}, "a"), "config is nested too deeply"),
        ("run(sets=deep)", lambda: run(TINY, "a", sets=[f"run.rounds={DEEP_ARRAY}"]), "--set run.rounds is nested"),
        ("run_sweep(deep file)", lambda: run_sweep("deep_sweep.toml", "s"), "deep_sweep.toml is nested too deeply"),
        ("run(rounds=10^26)", lambda: run({**TINY, "run": {**TINY["run"], "rounds": BIG}}, "a"),
         "run.rounds must be an integer in [1, 2^63 - 1]"),
        ("run(seed=np.uint64(2^63))", lambda: run({**TINY, "run": {**TINY["run"], "seed": np.uint64(2**63)}}, "a"),
         "run.seed must be an integer in [0, 2^63 - 1]"),
        ("run(task.seed=-2^63-1)", lambda: run({**TINY, "task": {**TINY["task"], "seed": -2**63 - 1}}, "a"),
         "task.seed must be an integer in [0, 2^63 - 1]"),
        ("run(big rounds file)", lambda: run("big_rounds.toml", "a"), "run.rounds must be an integer in [1, 2^63"),
        ("run(rounds=10^18)", lambda: run({**TINY, "run": {**TINY["run"], "rounds": 10**18}}, "a"),
         "run.rounds × algo.group_size × task.N too large"),
        ("FeatureSpec(d=10^26)", lambda: op.FeatureSpec("bigram", k=2, N=1, d=BIG),
         "features.d must be an integer in [1, 2^63 - 1]"),
        ("lq_report(contexts=10^26)", lambda: lq_report("run", contexts=BIG),
         "contexts must be an integer in [1, 2^63"),
        ("run_sweep(resume+overwrite)", lambda: run_sweep(sweep, "s", resume=True, overwrite=True),
         "exclude each other"),
        ("run_sweep(out=file)", lambda: run_sweep(sweep, "file.txt"), "is a file"),
        ("lq_report(source=5)", lambda: lq_report(5), "RUN_DIR_or_WEIGHTS must be a path"),
        ("run_experiment(out=5)", lambda: _experiment("sgd-lr", out=5), "--out must be a folder path"),
        ("run_experiment(overwrite=1)", lambda: _experiment("sgd-lr", out="e", overwrite=1),
         "overwrite must be true or false"),
        ("lq_report(out=file)", lambda: lq_report("run", contexts=10, out="file.txt"), "is a file"),
        ("lq_report(overwrite=str)", lambda: lq_report("run", contexts=10, out="q", overwrite=1),
         "overwrite must be true or false"),
    ]


API_CASES = _api_cases()


@pytest.mark.parametrize("call, message", [c[1:] for c in API_CASES], ids=[c[0] for c in API_CASES])
def test_api_raises_config_error_and_writes_nothing(call, message, ws):
    before = tree(ws)
    with pytest.raises(op.ConfigError) as err:
        call()
    assert message in str(err.value)
    assert tree(ws) == before


def test_numpy_integer_scalars_are_integers(tmp_path):
    cfg = {"task": {"d": np.int64(4), "k": np.int32(4), "N": np.uint8(2), "centres": 4},
           "base": {"kind": "zero"}, "algo": {"name": "pg", "lr": np.float32(0.5)},
           "run": {"rounds": np.int64(20), "eval_every": np.int64(10), "progress": np.bool_(False)}}
    s = run(cfg, tmp_path / "np")
    assert s["rounds"] == 20
    assert "N = 2\n" in (tmp_path / "np" / "config.toml").read_text()


# ------------------------------------------------------------------ what a run writes against the free disk space

def _free_disk(monkeypatch, nbytes):
    """Every file system reports ``nbytes`` free (limits.free_disk_bytes asks shutil.disk_usage)."""
    from types import SimpleNamespace
    monkeypatch.setattr(shutil, "disk_usage", lambda path: SimpleNamespace(total=2 * nbytes, used=nbytes, free=nbytes))


def _resolved(*sets):
    from onlinepg import config as C
    return C.resolve(C.apply_overrides(TINY, list(sets)))


def test_disk_bound_names_the_trace_fields_says_what_fits_and_writes_nothing(ws, monkeypatch):
    import re
    _free_disk(monkeypatch, 50 * 2**20)
    trace = ("run.eval_every=100000", "run.checkpoint_every=0", "run.keep_checkpoints=3")
    cfg = _resolved("run.rounds=1000000", *trace)   # 10^6 traced rounds × 112 bytes: more than 50 MiB
    before = tree(ws)
    with pytest.raises(op.ConfigError) as err:
        limits.check(cfg, out=ws / "new" / "run")
    msg = str(err.value)
    assert msg.startswith("run.rounds / run.trace_every too large: the run would write up to "), msg
    assert f"more than the 0.0488 GiB free on the file system of {ws};" in msg, msg
    assert tree(ws) == before
    every, rounds = map(int, re.search(r"raise run.trace_every to at least (\d+) or lower run.rounds to at most "
                                       r"(\d+)$", msg).groups())
    limits.check(_resolved("run.rounds=1000000", *trace, f"run.trace_every={every}"), out=ws / "new")
    limits.check(_resolved(f"run.rounds={rounds}", *trace), out=ws / "new")
    with pytest.raises(op.ConfigError):             # the least change: one step short does not fit
        limits.check(_resolved("run.rounds=1000000", *trace, f"run.trace_every={every - 1}"), out=ws / "new")
    with pytest.raises(op.ConfigError):
        limits.check(_resolved(f"run.rounds={rounds + 1}", *trace), out=ws / "new")
    limits.check(cfg)                               # no out: no disk check (memory and work only)


def test_disk_bound_counts_every_checkpoint_when_all_are_kept(ws, monkeypatch):
    _free_disk(monkeypatch, 2**30)
    cfg = _resolved("task.d=256", "task.k=256", "task.centres=16", "run.rounds=10000", "run.checkpoint_every=1",
                    "run.trace_every=1000", "run.eval_every=10000")       # 10^4 checkpoints of 2 MiB each
    with pytest.raises(op.ConfigError) as err:
        limits.check(cfg, out=ws / "new")
    msg = str(err.value)
    assert msg.startswith("run.keep_checkpoints × (task.d × task.k + task.k²) too large"), msg
    assert "set run.keep_checkpoints to at most " in msg, msg
    limits.check(cfg.replace(run={"keep_checkpoints": 3}), out=ws / "new")


def test_free_disk_space_is_that_of_the_nearest_existing_folder_plus_what_out_holds(ws, monkeypatch):
    _free_disk(monkeypatch, 10**9)
    assert limits.free_disk_bytes(ws / "new" / "deeper") == (ws, 10**9)
    held = sum(os.path.getsize(os.path.join(d, n)) for d, _, names in os.walk(ws / "run") for n in names)
    assert limits.free_disk_bytes(ws / "run") == (ws / "run", 10**9 + held)   # --resume / --overwrite reuse it


def test_a_folder_that_is_not_onlinepgs_is_not_walked_for_its_size(ws, monkeypatch):
    """``--out / --overwrite`` or a home folder is refused at once: the disk check does not first walk the whole
    tree to count bytes an overwrite would free (it walked / for 8 s before the refusal)."""
    _free_disk(monkeypatch, 10**9)
    mine = ws / "mine"
    (mine / "sub").mkdir(parents=True)
    (mine / "sub" / "thesis.tex").write_text("x" * 1000)
    monkeypatch.setattr(limits.os, "walk", lambda *a, **k: pytest.fail("walked a folder onlinepg did not write"))
    assert limits.free_disk_bytes(mine) == (mine, 10**9)


def test_disk_estimate_is_not_below_what_a_run_writes(done_run):
    from onlinepg import config as C
    written = sum(os.path.getsize(os.path.join(d, n)) for d, _, names in os.walk(done_run) for n in names)
    assert written <= sum(t[2] for t in limits.disk_estimate(C.resolve(C.load(done_run / "config.toml"))))


def test_trace_widths_are_the_engine_schemas():
    from onlinepg.engine import EVAL_SCHEMA, PASSK_SCHEMA, TRACKED_SCHEMA
    from onlinepg.kernels.codes import TRACE_SCHEMA
    assert (limits.TRACE_WIDTH, limits.EVAL_WIDTH, limits.TRACKED_WIDTH, limits.PASSK_WIDTH) == (
        len(TRACE_SCHEMA), len(EVAL_SCHEMA), len(TRACKED_SCHEMA), len(PASSK_SCHEMA))


def test_shipped_configs_pass_the_memory_work_and_disk_bounds(tmp_path, monkeypatch):
    """No shipped config comes near the bounds: 4 GiB of memory and 2 GiB of disk are plenty."""
    import pathlib

    from onlinepg import config as C
    _free_disk(monkeypatch, 2 * GIB)
    paths = sorted((pathlib.Path(__file__).resolve().parents[1] / "data" / "configs").glob("*.toml"))
    for cfg in [C.resolve(C.load(p)) for p in paths] + [C.resolve(C.default_experiment())]:
        limits.check(cfg, available=4 * GIB, out=tmp_path / "run")


def test_run_refuses_a_trace_the_disk_cannot_hold_before_writing(ws, monkeypatch, capsys):
    """engine.run asks the disk bound with its --out: one line, exit 2, nothing written."""
    _free_disk(monkeypatch, 10 * 2**20)
    before = tree(ws)
    code = cli(["run", *S("algo.name=pg", "run.rounds=1000000", "run.eval_every=100000"), "--out", "new",
                "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "run.rounds / run.trace_every too large" in err, err
    assert tree(ws) == before


@pytest.mark.parametrize("argv, message", [
    (["experiment", "sgd-lr", "--scale", "small", "--set", "T=" + "[" * 200 + "]" * 200], "--set T is nested too deeply"),
    (["experiment", "sgd-lr", "--scale", "small", "--set", "T=2.5"], "parameter T of experiment sgd-lr must be an integer"),
    (["experiment", "sgd-lr", "--scale", "small", "--set", "T=100000000000000000000000"], "within 64-bit integers"),
    (["experiment", "sgd-lr", "--scale", "small", "--set", "T=many"], "must be an integer"),
])
def test_experiment_parameters_are_checked(argv, message, ws, capsys):
    before = tree(ws)
    assert cli(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert tree(ws) == before


def test_sweeps_refuse_too_many_cells_and_deep_dicts():
    deep = {"grid": {"task.N": [1]}}
    node = deep
    for _ in range(100):
        node["x"] = {}
        node = node["x"]
    with pytest.raises(op.ConfigError, match="nested too deeply"):
        run_sweep(deep, "s")
    with pytest.raises(op.ConfigError, match="the sweep has 1000000000000 cells"):
        run_sweep({"sweep": {"seeds": 10**12}, "grid": {"task.N": [1]}}, "s")
