"""onlinepg.kernels — Numba nopython kernels of the linear autoregressive softmax policy.

Pure functions over arrays and explicit RNG state; they import numpy and numba only. Every function is
``@njit(cache=True)`` and can be called from a user's own jitted loop (see docs/embedding.md): the
per-sequence and batched kernels, and one round kernel per online algorithm (``pg_round``, ``sgd_round``, …, see
``rounds``) with its parameters (``round_params``) and scratch (``round_workspace``). Names and codes:
``codes``.
"""
from .advantages import binary_advantages, group_advantages
from .batch import (BLOCK, block_workspace, entropy_batch, entropy_batch_serial, grad_batch, grad_batch_serial,
                    loglik_batch, loglik_batch_serial, margin_batch,
                    margin_batch_serial, n_blocks, sample_batch, sample_batch_serial)
from .contexts import (mixture_contexts, mixture_contexts_serial, normal_pair, rademacher_contexts,
                       rademacher_contexts_serial, teacher_responses, teacher_responses_serial, uniform_ids,
                       uniform_ids_serial)
from .serial import PARALLEL_MIN_LANES, PARALLEL_MIN_ROWS, serial_twin

from .custom import custom_kernels
from .features import BIGRAM, CELLS, CUSTOM, FeatureMap, finish_grad, prepare, token_grad, token_logits
from .rng import next_u64, randint, seed_stream, seed_streams, splitmix64, uniform
from .codes import (ADAGRAD, ADAPTIVE, ADV_ESTIMATORS, BASE, BASELINES, BEHAVIOURS, CONSTANT, COUNTERS, EPS_MIXTURE, GROUP_MEAN,
                    LEAVE_ONE_OUT, LR_RULES, MIXTURE, NCOUNT, NO_BASELINE, NTRACE, POLICY, STEP_MODES, STEP_ORM,
                    STEP_PRM, STEP_SUPERVISED, TRACE_COLUMNS, TRACE_SCHEMA, UNIFORM, SCALE_REWARDS, LOSS_TYPES)
from .sequence import (SequenceWorkspace, accumulate_grad, correct_path_gap, logaddexp, prefix_entropy,
                       sample_sequence, sequence_loglik, sequence_workspace)
from .steps import (STEP_NAMES, STEPS, baseline_advantages, StepOut, StepParams, fused_supported, grpo_step,
                    grpo_step_serial, pass_k_weight, pg_step, pg_step_serial, policy_advantages, run_steps_fused,
                    run_steps_fused_serial, run_steps_grpo, run_steps_grpo_serial, run_steps_separate,
                    run_steps_separate_serial, separate_step,
                    separate_step_serial, step_kind, step_out, step_params)
from .counters import add_counts, pairwise_sum, write_trace_row
from .metrics import log1mexp, pass_at_k, support_fractions
from .softmax import log_softmax, logsumexp, sample_categorical
from .updates import adaptive_lr, apply_update, clipped_importance_weight, sq_norm
from . import codes, rounds, steps
from .rounds import (RoundParams, RoundWorkspace, pg_bandit_round, best_of_m_round, binary_search_round, explore_round,
                     on_policy_round, perceptron_round, pg_round, round_params, round_workspace, run_rounds,
                     sgd_round)
