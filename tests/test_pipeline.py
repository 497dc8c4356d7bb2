"""The kernels' compiler pipeline (numba_dwconv._pipeline): same results, numba's copies untouched outside it."""

import copy

import numba
import numpy as np
from numba.core import inline_closurecall, ir

from numba_dwconv._pipeline import KernelCompiler, shared_block_memo


def _function_ir(func):
    return numba.core.compiler.run_frontend(func)


def _sample(x, n):
    total = 0.0
    for i in range(n):
        if x[i] > 0:
            total += x[i]
        else:
            total -= x[i]
    return total


def test_outside_the_pipeline_block_copies_are_numbas_own():
    blocks = list(_function_ir(_sample).blocks.values())
    first, second = (inline_closurecall.copy.deepcopy(b) for b in blocks[:2])
    assert first.scope is not blocks[0].scope
    assert first.scope is not second.scope  # numba's own behaviour: one memo per block


def test_inside_the_pipeline_one_function_shares_one_memo():
    blocks = list(_function_ir(_sample).blocks.values())
    assert len(blocks) > 2
    with shared_block_memo():
        copies = [inline_closurecall.copy.deepcopy(b) for b in blocks]
        again = inline_closurecall.copy.deepcopy(blocks[0])  # a second copy of the function: a fresh memo
    assert all(isinstance(c, ir.Block) for c in copies)
    assert len({id(c.scope) for c in copies}) == 1 and copies[0].scope is not blocks[0].scope
    assert again is not copies[0] and again.scope is not copies[0].scope
    assert [[str(s) for s in c.body] for c in copies] == [[str(s) for s in b.body] for b in blocks]
    # a memo passed by the caller, or an object that is not a block, goes to copy.deepcopy unchanged
    memo = {}
    with shared_block_memo():
        assert inline_closurecall.copy.deepcopy(blocks[0], memo).scope is memo[id(blocks[0].scope)]
        assert inline_closurecall.copy.deepcopy([1, [2]]) == [1, [2]]
    assert inline_closurecall.copy.copy is copy.copy


@numba.njit(inline="always", pipeline_class=KernelCompiler)
def _leaf(a, i, w):
    return a[i] * w if i < a.shape[0] else 0.0


@numba.njit(inline="always", pipeline_class=KernelCompiler)
def _middle(a, i):
    return _leaf(a, i, 2.0) + _leaf(a, i + 1, 3.0)


@numba.njit(pipeline_class=KernelCompiler)
def _outer(a):
    out = np.empty(a.shape[0])
    for i in range(a.shape[0]):
        out[i] = _middle(a, i) - _leaf(a, i, 1.0)
    return out


def test_nested_inlined_helpers_compute_what_python_computes():
    a = np.arange(7.0) - 3.0
    expected = np.array([a[i] * 2.0 + (a[i + 1] * 3.0 if i + 1 < 7 else 0.0) - a[i] for i in range(7)])
    np.testing.assert_array_equal(_outer(a), expected)
    np.testing.assert_array_equal(_outer.py_func(a), expected)


def test_the_vector_width_attribute_goes_on_every_defined_function():
    from numba_dwconv._pipeline import with_vector_width

    text = 'define i32 @"f"(i64 %"x") alwaysinline\n{\nret i32 0\n}\ndeclare i32 @"g"()\ndefine void @"h"() {\n}'
    out = with_vector_width(text, 512).split("\n")
    assert out[0] == 'define i32 @"f"(i64 %"x") alwaysinline "prefer-vector-width"="512"'
    assert out[4] == 'declare i32 @"g"()'  # declarations are not definitions
    assert out[5] == 'define void @"h"() "prefer-vector-width"="512" {'


def test_kernels_carry_the_vector_width_of_this_machine():
    from numba_dwconv import _pipeline

    _outer(np.ones(3))
    llvm_ir = "\n".join(_outer.inspect_llvm().values())
    if _pipeline.VECTOR_WIDTH is None:
        assert "prefer-vector-width" not in llvm_ir
    else:
        assert f'"prefer-vector-width"="{_pipeline.VECTOR_WIDTH}"' in llvm_ir
