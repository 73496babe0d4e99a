"""Creative Adversarial Network (Elgammal et al. 2017): models, losses, data, training, sampling.

The pipeline loads a trained generator with ``canstyle.can.generate.load_generator``.
"""
