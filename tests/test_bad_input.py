"""Bad input, CLI and Python API: every case is refused with exit status 2 (``ConfigError`` from the API) and one
``onlinepg: error:`` line naming the field, and leaves no new file or folder behind (issue 10)."""
import os
import shutil

import numpy as np
import pytest

import onlinepg as op
from onlinepg import budget
from onlinepg.cli import main as cli
from onlinepg.engine import run
from onlinepg.lq import lq_report
from onlinepg.sweep import run_sweep

TINY = {"task": {"d": 4, "k": 4, "N": 3, "centres": 4}, "base": {"kind": "zero"}, "algo": {"name": "pg"},
        "run": {"rounds": 20, "eval_every": 10, "checkpoint_every": 10, "keep_checkpoints": 0, "progress": False}}
GIB = 2**30


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
    monkeypatch.chdir(tmp_path)
    # the memory check compares with a fixed 4 GiB, whatever this machine has free
    monkeypatch.setattr(budget, "available_bytes", lambda: 4 * GIB)
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
