"""Per-round online algorithms (docs/theory.md §4): one round kernel per algorithm, one compiled chunk driver each.

``ROUNDS`` is the algorithm table: a name (``pg_process/<variant>`` for the process-reward variants) and its
round kernel. Adding a per-round algorithm = its kernel module, one line here, its config keys.
``DRIVERS[name]`` plays a chunk of rounds with it (see ``driver``); ``round_kind`` names the kernel a config
needs. Progressive validation: each round first scores the current policy w_t on the round's context — the
exact log p_{w_t}(y*|x) and the response ŷ_t it commits to — and only then learns.
"""
from .banditron import banditron_round
from .best_of_m import best_of_m_round
from .common import PARAM_KEYS, RoundParams, RoundWorkspace, round_params, round_workspace, score_and_commit
from ..counters import write_trace_row
from .driver import chunk_driver, count_round, write_round_row
from .perceptron import perceptron_round
from .pg import pg_bandit_round, bandit_step, is_bandit, pg_round
from .pg_process import binary_search_round, explore_round, on_policy_round
from .sgd import sgd_round

ROUNDS = {
    "sgd": sgd_round,
    "pg": pg_round,
    "pg/bandit": pg_bandit_round,             # pg's fused N = 1 case, chosen by ``round_kind``
    "best_of_m": best_of_m_round,
    "pg_process/explore": explore_round,
    "pg_process/binary_search": binary_search_round,
    "pg_process/on_policy": on_policy_round,
    "perceptron": perceptron_round,
    "banditron": banditron_round,
}
DRIVERS = {name: chunk_driver(fn, "run_" + name.replace("/", "_")) for name, fn in ROUNDS.items()}
ALGOS = tuple(dict.fromkeys(name.split("/")[0] for name in ROUNDS))
PROCESS_VARIANTS = tuple(name.split("/")[1] for name in ROUNDS if name.startswith("pg_process/"))


def round_kind(algo, p, fm, variant="explore"):
    """The ``ROUNDS`` key of algorithm ``algo`` with parameters ``p`` (RoundParams) on feature map ``fm``."""
    if algo == "pg_process":
        return "pg_process/" + variant
    if algo == "pg" and is_bandit(p, fm):
        return "pg/bandit"
    return algo


def run_rounds(kind, p, fm, w, w0, G2, X, J, Ystar, first, seed, counters, trace_every, trace):
    """Play a chunk with the round kernel ``kind`` (a ``ROUNDS`` key); see ``driver._run_chunk``."""
    return DRIVERS[kind](p, fm, w, w0, G2, X, J, Ystar, first, seed, counters, trace_every, trace)


__all__ = ["ALGOS", "DRIVERS", "PARAM_KEYS", "PROCESS_VARIANTS", "ROUNDS", "RoundParams", "RoundWorkspace", "bandit_step",
           "chunk_driver", "count_round", "is_bandit", "round_kind", "round_params", "round_workspace",
           "run_rounds", "score_and_commit", "write_round_row", "write_trace_row"] + [f.__name__ for f in ROUNDS.values()]
