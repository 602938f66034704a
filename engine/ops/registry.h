/* THE list of ops: one line per op, X(enum name, definition). The definition lives in the file named
 * in the section comment. Adding an op = its ls_op_def in that file + one line here. */
#ifndef LS_OPS_REGISTRY_H
#define LS_OPS_REGISTRY_H

#define LS_OP_LIST(X)                              \
    /* view_ops.c */                               \
    X(LS_OP_RESHAPE, ls_op_reshape)                \
    X(LS_OP_PERMUTE, ls_op_permute)                \
    X(LS_OP_TRANSPOSE, ls_op_transpose)            \
    X(LS_OP_NARROW, ls_op_narrow)                  \
    X(LS_OP_SELECT, ls_op_select)                  \
    X(LS_OP_SQUEEZE, ls_op_squeeze)                \
    X(LS_OP_UNSQUEEZE, ls_op_unsqueeze)            \
    X(LS_OP_EXPAND, ls_op_expand)                  \
    X(LS_OP_CONTIGUOUS, ls_op_contiguous)          \
    X(LS_OP_CAST, ls_op_cast)                      \
    X(LS_OP_UNNARROW, ls_op_unnarrow)              \
    /* elementwise.c */                            \
    X(LS_OP_NEG, ls_op_neg)                        \
    X(LS_OP_EXP, ls_op_exp)                        \
    X(LS_OP_LOG, ls_op_log)                        \
    X(LS_OP_SQRT, ls_op_sqrt)                      \
    X(LS_OP_ABS, ls_op_abs)                        \
    X(LS_OP_SIGN, ls_op_sign)                      \
    X(LS_OP_RELU, ls_op_relu)                      \
    X(LS_OP_RELU_BACKWARD, ls_op_relu_backward)    \
    X(LS_OP_TANH, ls_op_tanh)                      \
    X(LS_OP_SIGMOID, ls_op_sigmoid)                \
    X(LS_OP_SOFTPLUS, ls_op_softplus)              \
    X(LS_OP_ERF, ls_op_erf)                        \
    X(LS_OP_ADD, ls_op_add)                        \
    X(LS_OP_SUB, ls_op_sub)                        \
    X(LS_OP_MUL, ls_op_mul)                        \
    X(LS_OP_DIV, ls_op_div)                        \
    X(LS_OP_POW, ls_op_pow)                        \
    X(LS_OP_MINIMUM, ls_op_minimum)                \
    X(LS_OP_MAXIMUM, ls_op_maximum)                \
    X(LS_OP_CLAMP, ls_op_clamp)                    \
    X(LS_OP_EQ, ls_op_eq)                          \
    X(LS_OP_NE, ls_op_ne)                          \
    X(LS_OP_LT, ls_op_lt)                          \
    X(LS_OP_LE, ls_op_le)                          \
    X(LS_OP_GT, ls_op_gt)                          \
    X(LS_OP_GE, ls_op_ge)                          \
    X(LS_OP_WHERE, ls_op_where)                    \
    /* reduce.c */                                 \
    X(LS_OP_SUM, ls_op_sum)                        \
    X(LS_OP_MEAN, ls_op_mean)                      \
    X(LS_OP_VAR, ls_op_var)                        \
    X(LS_OP_STD, ls_op_std)                        \
    X(LS_OP_MAX, ls_op_max)                        \
    X(LS_OP_MIN, ls_op_min)                        \
    X(LS_OP_ARGMAX, ls_op_argmax)                  \
    X(LS_OP_ARGMIN, ls_op_argmin)                  \
    X(LS_OP_NORM, ls_op_norm)                      \
    X(LS_OP_LOGSUMEXP, ls_op_logsumexp)            \
    X(LS_OP_SUM_TO, ls_op_sum_to)                  \
    /* linalg.c */                                 \
    X(LS_OP_MATMUL, ls_op_matmul)                  \
    X(LS_OP_LINEAR, ls_op_linear)                  \
    X(LS_OP_DOT, ls_op_dot)                        \
    X(LS_OP_OUTER, ls_op_outer)                    \
    /* linalg_solve.c */                           \
    X(LS_OP_LINALG_SOLVE, ls_op_linalg_solve)      \
    X(LS_OP_LINALG_LSTSQ, ls_op_linalg_lstsq)      \
    /* diag.c */                                   \
    X(LS_OP_DIAG, ls_op_diag)                      \
    X(LS_OP_TRACE, ls_op_trace)                    \
    /* join.c */                                   \
    X(LS_OP_CAT, ls_op_cat)                        \
    /* index.c */                                  \
    X(LS_OP_GATHER, ls_op_gather)                  \
    X(LS_OP_SCATTER_ADD, ls_op_scatter_add)        \
    X(LS_OP_INDEX_SELECT, ls_op_index_select)      \
    X(LS_OP_INDEX_ADD, ls_op_index_add)            \
    /* conv.c */                                   \
    X(LS_OP_CONV2D, ls_op_conv2d)                  \
    X(LS_OP_CONV2D_INPUT_GRAD, ls_op_conv2d_input_grad) \
    X(LS_OP_CONV2D_WEIGHT_GRAD, ls_op_conv2d_weight_grad) \
    /* pool.c */                                   \
    X(LS_OP_MAXPOOL2D, ls_op_maxpool2d)            \
    X(LS_OP_MAXPOOL2D_SCATTER, ls_op_maxpool2d_scatter) \
    X(LS_OP_MAXPOOL2D_PICK, ls_op_maxpool2d_pick)  \
    X(LS_OP_AVGPOOL2D, ls_op_avgpool2d)            \
    X(LS_OP_AVGPOOL2D_BACKWARD, ls_op_avgpool2d_backward) \
    /* batchnorm_ops.c */                          \
    X(LS_OP_BATCHNORM, ls_op_batchnorm)            \
    X(LS_OP_BATCHNORM_GRAD_STATS, ls_op_batchnorm_grad_stats) \
    X(LS_OP_BATCHNORM_INPUT_GRAD, ls_op_batchnorm_input_grad) \
    X(LS_OP_BATCHNORM_AFFINE, ls_op_batchnorm_affine) \
    /* loss.c */                                   \
    X(LS_OP_LOG_SOFTMAX, ls_op_log_softmax)        \
    X(LS_OP_SOFTMAX, ls_op_softmax)                \
    X(LS_OP_CROSS_ENTROPY, ls_op_cross_entropy)    \
    X(LS_OP_NLL_LOSS, ls_op_nll_loss)              \
    X(LS_OP_MSE_LOSS, ls_op_mse_loss)              \
    X(LS_OP_ONE_HOT, ls_op_one_hot)

#endif
