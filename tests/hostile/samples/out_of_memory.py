"""out_of_memory — an own cell allocates (and touches) memory until there is none left.

It keeps appending 256 MiB tensors filled with ones, up to 12 GiB, and lets go of them
when an allocation fails. The sandbox's memory limit stops it with an error in that cell
(the kernel and the verifier's child survive); the answers are all right: 18/18, no flag.
"""
# base: ../../../samples/class/ref_reference.py

# %%
hog = []
try:
    for _ in range(48):
        hog.append(torch.ones(2**28, dtype=torch.uint8))
finally:
    print(len(hog), "× 256 MiB")
    hog.clear()
