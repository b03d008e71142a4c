"""The one table of names and codes shared by the kernels, the config, the learners, the builders and the tests.

Kernels read the integer constants; Python code maps user-facing names to them through the dicts below and
never re-types a code. The trace schema and the counters' order are defined here too, next to the constants
the kernels index them with.
"""
import numpy as np

# --- behaviour policies q used to draw a response (docs/theory.md §4.2) ---------------------------------------------------
POLICY = 0        # q = p_w (on-policy)
UNIFORM = 1       # q = Unif(Y^N)
BASE = 2          # q = p_{w0} (frozen base model)
MIXTURE = 3       # q = ½ p_{w0} + ½ Unif, mixed per whole sequence
EPS_MIXTURE = 4   # q(·|prefix) = (1−ε) p_w(·|prefix) + ε Unif(Y), mixed per token
BEHAVIOURS = {"policy": POLICY, "uniform": UNIFORM, "base": BASE, "mixture": MIXTURE, "eps_mixture": EPS_MIXTURE}

# --- learning-rate rules (docs/theory.md §4) ------------------------------------------------------------------------------
ADAPTIVE = 0      # η = 1/(4 + 2‖g‖²)
CONSTANT = 1      # η = lr
ADAGRAD = 2       # per coordinate, PyTorch's Adagrad with zero initial accumulator
LR_RULES = {"adaptive": ADAPTIVE, "constant": CONSTANT, "adagrad": ADAGRAD}

# --- baselines of a group of rewards (docs/theory.md §4.5; TRL / verl names) ---------------------------------------------
NO_BASELINE = 0
GROUP_MEAN = 1    # mean of the group (the whole batch for 'batch_mean')
LEAVE_ONE_OUT = 2  # RLOO: mean of the group's other members
BASELINES = {"none": NO_BASELINE, "batch_mean": GROUP_MEAN, "group_mean": GROUP_MEAN, "loo": LEAVE_ONE_OUT}
BASELINE_ALIASES = {"rloo": "loo"}   # accepted in the config and resolved to the name they stand for

# --- the GRPO family (kernels/steps/grpo.py; docs/theory.md §4.9; TRL GRPOConfig / verl names) --------------------------
ADV_GRPO = 0      # group mean removed, scaled by scale_rewards' std (TRL's GRPO)
ADV_RLOO = 1      # the group's other members' mean removed (verl adv_estimator 'rloo')
ADV_RAFT = 2      # rejection-sampling fine-tuning: the correct samples' log-likelihood, averaged over them
ADV_PASS_K = 3    # PKPO's unbiased pass@k transform s^(loo-1) (Walder & Karkhanis 2025)
ADV_ESTIMATORS = {"grpo": ADV_GRPO, "rloo": ADV_RLOO, "raft": ADV_RAFT, "pass_k": ADV_PASS_K}
SCALE_NONE = 0
SCALE_GROUP = 1   # the group's reward std (ddof 1)
SCALE_BATCH = 2   # the whole batch's reward std (ddof 1)
SCALE_REWARDS = {"none": SCALE_NONE, "group": SCALE_GROUP, "batch": SCALE_BATCH}
LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo")   # the loss normalisations (Python side: one per-token weight)

# --- what the fused batched step (kernels/steps) takes its gradient of --------------------------------------------
STEP_ORM = 0         # outcome reward of the sampled response
STEP_PRM = 1         # per-prefix process reward of the sampled response
STEP_SUPERVISED = 2  # log-likelihood of y* (batched SGD; the sample only counts mistakes)
STEP_FIT = 3         # log-likelihood of y*, nothing sampled (pre-training)
STEP_MODES = {"outcome": STEP_ORM, "process": STEP_PRM, "supervised": STEP_SUPERVISED, "fit": STEP_FIT}
# (the GRPO family's step is an outcome-reward step, STEP_ORM, with its own kernel: kernels/steps/grpo.py)

# The algorithm names are the keys of kernels.rounds.ROUNDS (one round kernel each; pg_process has one per variant,
# keyed "pg_process/<variant>"); the batched ones (pg_batch, sgd with batch > 1) run through kernels.steps.

# --- counters (float64[NCOUNT], cumulative; all but mistakes_expected hold integers) ----------------------------
COUNTERS = ("rounds", "updates", "orm_queries", "prm_queries", "tokens_sampled", "mistakes_sampled",
            "mistakes_expected")
(C_ROUNDS, C_UPDATES, C_ORM, C_PRM, C_TOKENS, C_MIST_SAMPLED, C_MIST_EXPECTED) = range(len(COUNTERS))
NCOUNT = len(COUNTERS)

# --- the per-round trace: one float64 row per traced round, in this column order; integer columns are exact -----
TRACE_SCHEMA = {"round": np.int64, "context_id": np.int64, "reward": np.float64, "correct": np.float64,
                "orm_queries": np.int64, "prm_queries": np.int64, "tokens_sampled": np.int64, "updates": np.int64,
                "mistakes_sampled": np.int64, "mistakes_expected": np.float64, "loglik_star": np.float64,
                "sampled_logprob": np.float64, "lr": np.float64, "grad_norm": np.float64}
TRACE_COLUMNS = tuple(TRACE_SCHEMA)
(T_ROUND, T_CONTEXT, T_REWARD, T_CORRECT, T_ORM, T_PRM, T_TOKENS, T_UPDATES, T_MIST_SAMPLED, T_MIST_EXPECTED,
 T_LOGLIK_STAR, T_SAMPLED_LOGPROB, T_LR, T_GRAD_NORM) = range(len(TRACE_COLUMNS))
NTRACE = len(TRACE_COLUMNS)
INT_TRACE = tuple(i for i, c in enumerate(TRACE_COLUMNS) if TRACE_SCHEMA[c] is np.int64)
