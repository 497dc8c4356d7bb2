"""The bad-input catalogue: every case raises ValueError/TypeError naming the argument and value."""

import numpy as np
import pytest

import numba_dwconv as nd

X = np.zeros((2, 10, 3), np.float32)  # channels_last, C = 3
K = np.zeros((3, 3, 2), np.float32)  # (K, C, m), C*m = 6
GY = np.zeros((2, 8, 6), np.float32)  # valid output of X with K


def fwd(**kw):
    args = {"inputs": X, "kernel": K}
    args.update(kw)
    return lambda: nd.depthwise_conv1d(**args)


def bwd(**kw):
    args = {"grad_outputs": GY, "inputs": X, "kernel": K}
    args.update(kw)
    return lambda: nd.depthwise_conv1d_backward(**args)


def igrad(**kw):
    args = {"grad_outputs": GY, "kernel": K, "input_length": 10}
    args.update(kw)
    return lambda: nd.depthwise_conv1d_input_grad(**args)


def kgrad(**kw):
    args = {"grad_outputs": GY, "inputs": X, "kernel_size": 3}
    args.update(kw)
    return lambda: nd.depthwise_conv1d_kernel_grad(**args)


CASES = [
    # (id, call, exception, words the message must contain)
    ("inputs rank 2", fwd(inputs=np.zeros((10, 3), np.float32)), ValueError, ["inputs", "(10, 3)"]),
    ("inputs rank 4", fwd(inputs=np.zeros((1, 2, 10, 3), np.float32)), ValueError, ["inputs", "(1, 2, 10, 3)"]),
    ("channel mismatch", fwd(inputs=np.zeros((2, 10, 4), np.float32)), ValueError, ["kernel", "3", "4"]),
    ("channel mismatch first", fwd(data_format="channels_first"), ValueError, ["kernel", "3 channels", "10"]),
    ("kernel rank 2", fwd(kernel=np.zeros((3, 3), np.float32)), ValueError, ["kernel", "(3, 3)"]),
    ("kernel rank 4", fwd(kernel=np.zeros((3, 1, 3, 2), np.float32)), ValueError, ["kernel", "(3, 1, 3, 2)"]),
    ("kernel size 0", fwd(kernel=np.zeros((0, 3, 1), np.float32)), ValueError, ["kernel", "(0, 3, 1)"]),
    ("multiplier 0", fwd(kernel=np.zeros((3, 3, 0), np.float32)), ValueError, ["kernel", "(3, 3, 0)"]),
    ("bias shape", fwd(bias=np.zeros(3, np.float32)), ValueError, ["bias", "(6,)", "(3,)"]),
    ("bias rank", fwd(bias=np.zeros((6, 1), np.float32)), ValueError, ["bias", "(6, 1)"]),
    ("bias int", fwd(bias=np.zeros(6, np.int32)), TypeError, ["bias", "int32"]),
    ("strides 0", fwd(strides=0), ValueError, ["strides", "0"]),
    ("strides negative", fwd(strides=-2), ValueError, ["strides", "-2"]),
    ("strides float", fwd(strides=1.5), ValueError, ["strides", "1.5"]),
    ("strides bool", fwd(strides=True), ValueError, ["strides", "True"]),
    ("strides pair", fwd(strides=(1, 1)), ValueError, ["strides", "(1, 1)"]),
    ("strides string", fwd(strides="2"), ValueError, ["strides", "'2'"]),
    ("dilation 0", fwd(dilation_rate=0), ValueError, ["dilation_rate", "0"]),
    ("dilation float in list", fwd(dilation_rate=[2.0]), ValueError, ["dilation_rate", "[2.0]"]),
    ("padding unknown", fwd(padding="full"), ValueError, ["padding", "'full'"]),
    ("padding typo", fwd(padding="causal "), ValueError, ["padding", "'causal '"]),
    ("padding None", fwd(padding=None), ValueError, ["padding", "None"]),
    ("data_format unknown", fwd(data_format="NWC"), ValueError, ["data_format", "'NWC'"]),
    ("data_format int", fwd(data_format=1), ValueError, ["data_format", "1"]),
    ("valid output <= 0", fwd(inputs=np.zeros((2, 2, 3), np.float32)), ValueError,
     ["zero or negative", "(2, 2, 3)", "(3, 3, 2)", "dilation_rate=(1,)", "strides=(1,)", "'valid'"]),
    ("valid output <= 0 dilated", fwd(dilation_rate=5), ValueError, ["zero or negative", "dilation_rate=(5,)"]),
    ("inputs int", fwd(inputs=np.zeros((2, 10, 3), np.int64)), TypeError, ["inputs", "int64"]),
    ("inputs bool", fwd(inputs=np.zeros((2, 10, 3), bool)), TypeError, ["inputs", "bool"]),
    ("inputs complex", fwd(inputs=np.zeros((2, 10, 3), np.complex64)), TypeError, ["inputs", "complex64"]),
    ("inputs float16", fwd(inputs=np.zeros((2, 10, 3), np.float16)), TypeError, ["inputs", "float16"]),
    ("inputs object", fwd(inputs=np.array([[[None]]])), TypeError, ["inputs", "object"]),
    ("kernel int", fwd(kernel=np.zeros((3, 3, 2), np.int32)), TypeError, ["kernel", "int32"]),
    ("device unknown", fwd(device="gpu"), ValueError, ["device", "'gpu'"]),
    ("device None", fwd(device=None), ValueError, ["device", "None"]),
    ("backward grad shape", bwd(grad_outputs=np.zeros((2, 7, 6), np.float32)), ValueError,
     ["grad_outputs", "(2, 8, 6)", "(2, 7, 6)"]),
    ("backward grad rank", bwd(grad_outputs=np.zeros((8, 6), np.float32)), ValueError, ["grad_outputs", "(8, 6)"]),
    ("backward grad int", bwd(grad_outputs=np.zeros((2, 8, 6), np.int16)), TypeError, ["grad_outputs", "int16"]),
    ("input_grad length 0", igrad(input_length=0), ValueError, ["input_length", "0"]),
    ("input_grad length float", igrad(input_length=10.0), ValueError, ["input_length", "10.0"]),
    ("input_grad wrong length", igrad(input_length=12), ValueError, ["grad_outputs", "(2, 10, 6)", "(2, 8, 6)"]),
    ("kernel_grad size 0", kgrad(kernel_size=0), ValueError, ["kernel_size", "0"]),
    ("kernel_grad size tuple 2", kgrad(kernel_size=(3, 3)), ValueError, ["kernel_size", "(3, 3)"]),
    ("kernel_grad channels", kgrad(grad_outputs=np.zeros((2, 8, 5), np.float32)), ValueError,
     ["grad_outputs", "(2, 8, 5)", "3"]),
    ("kernel_grad wrong size", kgrad(kernel_size=4), ValueError, ["grad_outputs", "(2, 7, 6)", "(2, 8, 6)"]),
]


@pytest.mark.parametrize(("call", "exception", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input(call, exception, words):
    with pytest.raises(exception) as info:
        call()
    message = str(info.value)
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


def test_catalogue_is_large():
    assert len(CASES) >= 30


@pytest.mark.skipif(nd.cuda_available(), reason="a GPU (or the simulator) is available")
def test_cuda_request_without_gpu_is_explained():
    with pytest.raises(nd.CudaUnavailableError, match=r'pip install "\.\[cuda\]" from a checkout'):
        nd.depthwise_conv1d(X, K, device="cuda")
    assert issubclass(nd.CudaUnavailableError, RuntimeError)


def test_padding_and_data_format_are_case_insensitive():
    y = nd.depthwise_conv1d(X, K, padding="SAME", data_format="Channels_Last")
    assert y.shape == (2, 10, 6)
