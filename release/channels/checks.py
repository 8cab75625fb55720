"""What only the assignment 多输入多输出通道 (D2L §6.4) knows: references, examples, known mistakes.

The test cells take the checks themselves from testkit.py (the course's test-cell API, next
to this file) and from here:

- the book's examples (`book_example`) and float64 references computed with F.conv2d
  (the tests may use it; your answers may not);
- `call_checked`: a call by this assignment's rules (inputs unchanged, no convolution
  operator, the rule of policy.py);
- `diagnose_corr2d`: names a known mistake when the values are wrong (a flipped kernel);
- `loop_corr2d_multi_in_out`: the per-pixel loop the bonus is timed against.

You may read it; at grading the instructor's copy is used, so editing it changes nothing.
"""
import torch
import torch.nn.functional as F

import testkit
from policy import FORBIDDEN_OPS, FORBIDDEN_WHAT

#: Where new tensors must come from: X's dtype and device (the book's torch.zeros is neither).
DTYPE_HINT = "：新建输出时写 X.new_zeros(形状)，不要写 torch.zeros(形状)（它总是 CPU 上的 float32）"


def call_checked(fn, *args, case):
    """fn(*args) by the rules of this assignment: no argument changed, no convolution operator."""
    __tracebackhide__ = True
    return testkit.call_checked(fn, *args, case=case, forbidden=FORBIDDEN_OPS, forbidden_what=FORBIDDEN_WHAT)


def book_example(c_i=2, c_o=None, dtype=torch.float32, device="cpu"):
    """The book's example, made anew at each call: X is 0..8 as a 3×3 matrix and K is 0..3 as a 2×2
    one. c_i=1: X (3, 3) and K (2, 2); c_i=2: the two channels X, X+1 and K, K+1; c_o=3: the
    kernels K, K+1, K+2 stacked, (3, 2, 2, 2)."""
    X = torch.arange(9.0, dtype=dtype, device=device).reshape(3, 3)
    K = torch.arange(4.0, dtype=dtype, device=device).reshape(2, 2)
    if c_i == 1:
        return X, K
    X, K = torch.stack((X, X + 1)), torch.stack((K, K + 1))
    if c_o == 3:
        K = torch.stack((K, K + 1, K + 2))
    return X, K


#: The book's outputs: corr2d of X[0] and K[0]; corr2d_multi_in; corr2d_multi_in_out with K, K+1, K+2.
BOOK_Y1 = torch.tensor([[19.0, 25.0], [37.0, 43.0]])
BOOK_Y2 = torch.tensor([[56.0, 72.0], [104.0, 120.0]])
BOOK_Y3 = torch.tensor([[[56.0, 72.0], [104.0, 120.0]],
                        [[76.0, 100.0], [148.0, 172.0]],
                        [[96.0, 128.0], [192.0, 224.0]]])


def _float64_cpu(*tensors):
    return [t.detach().to("cpu", torch.float64) for t in tensors]


def reference_corr2d(X, K):
    """X: (n_h, n_w), K: (k_h, k_w) -> (m_h, m_w), in float64 on the CPU."""
    X, K = _float64_cpu(X, K)
    return F.conv2d(X[None, None], K[None, None])[0, 0]


def reference_corr2d_multi_in(X, K):
    """X: (c_i, n_h, n_w), K: (c_i, k_h, k_w) -> (m_h, m_w), in float64 on the CPU."""
    X, K = _float64_cpu(X, K)
    return F.conv2d(X[None], K[None])[0, 0]


def reference_corr2d_multi_in_out(X, K):
    """X: (c_i, n_h, n_w), K: (c_o, c_i, k_h, k_w) -> (c_o, m_h, m_w), in float64 on the CPU."""
    X, K = _float64_cpu(X, K)
    return F.conv2d(X[None], K)[0]


def expected(reference, X, K):
    """The reference result as the answer must give it: X's dtype and device."""
    return reference(X, K).to(X)


def diagnose_corr2d(reference, X, K):
    """A `diagnose` for testkit.assert_close: names a flipped kernel (a true convolution)."""
    def diagnose(got):
        flipped = reference(X, K.flip(-2, -1)).to(got)
        if got.shape == flipped.shape and torch.allclose(got.detach(), flipped, atol=1e-4, rtol=1e-4):
            return ("你算的是卷积 (convolution)：核被上下、左右翻转了。深度学习里的“卷积层”做的是互相关 "
                    "(cross-correlation)：Y[i, j] = Σ X[i+a, j+b]·K[a, b]，核不翻转")
        return None
    return diagnose


def loop_corr2d_multi_in_out(X, K):
    """The bonus's speed baseline: one Python iteration per output pixel, all channels at once."""
    c_o, _, k_h, k_w = K.shape
    m_h, m_w = X.shape[1] - k_h + 1, X.shape[2] - k_w + 1
    Y = X.new_zeros((c_o, m_h, m_w))
    for i in range(m_h):
        for j in range(m_w):
            Y[:, i, j] = (X[:, i:i + k_h, j:j + k_w] * K).sum(dim=(1, 2, 3))
    return Y
