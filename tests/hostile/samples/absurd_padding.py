"""absurd_padding — conv2d_layer returns a layer with a padding of 60000 pixels.

The layer's weight and bias are right, but its padding makes its output 120000×120000 per
channel. The test runs the layer to compare its output: in the grader's own process this took
it to 9.6 GB. Now the test runs in the verifier's jail, under its memory limit: the allocation
fails there, every part of test_conv2d_layer scores 0 (3 points) and the grader's memory does
not move. 14/17 + 2.
"""
# base: ../../../samples/class/ref_reference.py

# %% conv2d_layer
def conv2d_layer(K, b):
    """权重为 K、偏置为 b 的卷积层。K: (c_o, c_i, k_h, k_w), b: (c_o,) -> nn.Conv2d"""
    c_o, c_i, k_h, k_w = K.shape
    layer = nn.Conv2d(c_i, c_o, kernel_size=(k_h, k_w), padding=60_000, dtype=K.dtype, device=K.device)
    with torch.no_grad():
        layer.weight.copy_(K)
        layer.bias.copy_(b)
    return layer
