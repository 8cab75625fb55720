"""thread_conv — runs F.conv2d in a worker thread, where a thread-local operator recorder does not look.

corr2d starts a thread that computes the answer with F.conv2d and returns what the thread
left behind (zeros if the thread failed). While graded, the verifier's child may start no
thread at all (seccomp, grading/guard.py) and convolutions are refused for every thread:
corr2d raises, and test_corr2d scores 0 (the later questions are graded with the instructor's
corr2d). Everything else is the reference: 14/17, and the bonus's 2 points of extra credit.
"""
# base: ../../../samples/class/ref_reference.py

# %% corr2d
import threading


def corr2d(X, K):
    """二维互相关。X: (n_h, n_w), K: (k_h, k_w) -> (n_h - k_h + 1, n_w - k_w + 1)"""
    out = [X.new_zeros((X.shape[0] - K.shape[0] + 1, X.shape[1] - K.shape[1] + 1))]

    def work():
        out[0] = torch.nn.functional.conv2d(X[None, None], K[None, None])[0, 0]

    t = threading.Thread(target=work)
    t.start()
    t.join()
    return out[0]
