"""onlinepg.kernels — Numba nopython kernels of the linear autoregressive softmax policy.

Pure functions over arrays and explicit RNG state; they import numpy and numba only. Every function is
``@njit(cache=True)`` and can be called from a user's own jitted loop (see README, "Embedding").
"""
from .batch import BLOCK, grad_batch, loglik_batch, margin_batch, n_blocks, sample_batch
from .contexts import mixture_contexts, normal, rademacher_contexts, teacher_responses, uniform_ids
from .custom import custom_kernels
from .features import BIGRAM, CELLS, CUSTOM, FeatureMap, finish_grad, prepare, token_grad, token_logits
from .rng import next_u64, randint, seed_stream, seed_streams, splitmix64, uniform
from .sequence import (BASE, EPS_MIXTURE, MIXTURE, POLICY, UNIFORM, accumulate_grad, correct_path_gap, logaddexp,
                       sample_sequence, sequence_loglik)
from .softmax import log_softmax, logsumexp, sample_categorical
from .updates import (ADAGRAD, ADAPTIVE, CONSTANT, adaptive_lr, apply_update, clipped_importance_weight,
                      sq_norm)
