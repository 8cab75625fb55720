"""ref_reference — a careful student: every answer right, written in their own words.

参考答案 (reference)：所有函数都正确并遵守约定（dtype/device 跟随 X、形状不对时 raise ValueError、
不修改输入、不用卷积算子），附加题也做了。Expected: full marks, 17/17 autograded plus the 2 points
of extra credit (+ the written answer for the grader).
Most other samples start from this one (`# base: ref_reference`) and change a single cell.
"""

# %% corr2d
def corr2d(X, K):
    """二维互相关。X: (n_h, n_w), K: (k_h, k_w) -> (n_h - k_h + 1, n_w - k_w + 1)"""
    if X.dim() != 2 or K.dim() != 2:
        raise ValueError(f"X 和 K 都要是二维的：X {tuple(X.shape)}，K {tuple(K.shape)}")
    k_h, k_w = K.shape
    m_h, m_w = X.shape[0] - k_h + 1, X.shape[1] - k_w + 1
    if m_h < 1 or m_w < 1:
        raise ValueError(f"核 {tuple(K.shape)} 比输入 {tuple(X.shape)} 大")
    Y = X.new_zeros((m_h, m_w))  # same dtype and device as X
    for i in range(m_h):
        for j in range(m_w):
            Y[i, j] = (X[i:i + k_h, j:j + k_w] * K).sum()
    return Y

# %% corr2d_multi_in
def corr2d_multi_in(X, K):
    """多输入通道的互相关。X: (c_i, n_h, n_w), K: (c_i, k_h, k_w) -> (m_h, m_w)"""
    if X.dim() != 3 or K.dim() != 3 or len(X) != len(K):
        raise ValueError(f"X 和 K 的通道数要相同：X {tuple(X.shape)}，K {tuple(K.shape)}")
    return sum(corr2d(x, k) for x, k in zip(X, K))

# %% corr2d_multi_in_out
def corr2d_multi_in_out(X, K):
    """多输入多输出通道的互相关。X: (c_i, n_h, n_w), K: (c_o, c_i, k_h, k_w) -> (c_o, m_h, m_w)"""
    if K.dim() != 4:
        raise ValueError(f"K 要是四维的 (c_o, c_i, k_h, k_w)：{tuple(K.shape)}")
    return torch.stack([corr2d_multi_in(X, k) for k in K], dim=0)

# %% corr2d_multi_in_out_1x1
def corr2d_multi_in_out_1x1(X, K):
    """1×1 卷积，一次矩阵乘法。X: (c_i, n_h, n_w), K: (c_o, c_i, 1, 1) -> (c_o, n_h, n_w)"""
    if X.dim() != 3 or K.dim() != 4 or tuple(K.shape[1:]) != (X.shape[0], 1, 1):
        raise ValueError(f"需要 X (c_i, n_h, n_w) 和 K (c_o, c_i, 1, 1)：X {tuple(X.shape)}，K {tuple(K.shape)}")
    c_i, n_h, n_w = X.shape
    c_o = K.shape[0]
    Y = torch.matmul(K.reshape(c_o, c_i), X.reshape(c_i, n_h * n_w))
    return Y.reshape(c_o, n_h, n_w)

# %% [markdown] written_1x1
# 1×1 卷积在位置 $(i,j)$ 的输出只用到输入在同一位置的 $c_i$ 个通道值：
# $\mathbf{Y}_{:,i,j} = \mathbf{W}\mathbf{X}_{:,i,j} + \mathbf{b}$，其中 $\mathbf{W}$ 是把形状为
# $c_o\times c_i\times 1\times 1$ 的核变形得到的 $c_o\times c_i$ 矩阵，偏置 $\mathbf{b}$ 的形状是 $(c_o,)$。
# 这正是一个输入 $c_i$ 维、输出 $c_o$ 维的全连接层：像素是样本，通道是特征。
# 所有 $n_h n_w$ 个像素位置共享同一个 $\mathbf{W}$ 和 $\mathbf{b}$。

# %% conv_flops
def conv_flops(c_i, c_o, k_h, k_w, m_h, m_w):
    """卷积层的乘法次数：c_o·m_h·m_w 个输出元素，每个 c_i·k_h·k_w 次乘法。"""
    return c_o * m_h * m_w * (c_i * k_h * k_w)


def train_hours(flop, tflops):
    """以每秒 tflops × 10**12 次浮点运算的速度，完成 flop 次运算所需的小时数。"""
    seconds = flop / (tflops * 10**12)
    return seconds / 3600

# %% conv2d_layer
def conv2d_layer(K, b):
    """权重为 K、偏置为 b 的卷积层。K: (c_o, c_i, k_h, k_w), b: (c_o,) -> nn.Conv2d"""
    c_o, c_i, k_h, k_w = K.shape
    layer = nn.Conv2d(c_i, c_o, kernel_size=(k_h, k_w), dtype=K.dtype, device=K.device)
    with torch.no_grad():
        layer.weight.copy_(K)
        layer.bias.copy_(b)
    return layer

# %% corr2d_multi_in_out_fast
def corr2d_multi_in_out_fast(X, K):
    """不对输出像素循环的多通道互相关。X: (c_i, n_h, n_w), K: (c_o, c_i, k_h, k_w) -> (c_o, m_h, m_w)"""
    c_o, c_i, k_h, k_w = K.shape
    windows = X.unfold(1, k_h, 1).unfold(2, k_w, 1)  # (c_i, m_h, m_w, k_h, k_w), a view
    return torch.einsum("oiab,ihwab->ohw", K, windows)
