"""semcom: generative semantic communication in PyTorch.

Data flows like the physical link: transmitter (codec encoder, power normalisation)
-> channel (AWGN / Rayleigh, on Sionna) -> receiver (equalise, estimate SNR, step-match,
diffusion denoise, decode). See "Conventions" in the README for the conventions every module
follows.
"""

__version__ = "0.1.0"
