"""TimeGAN (Yoon et al., NeurIPS 2019) for fixed-interval multivariate series.

``network`` holds the five recurrent networks, ``train`` the three training phases,
``synthesizer`` the :class:`TimeGANSynthesizer` (fit / sample / stream / save / load).
"""

from streamsynth.models.timegan.network import Layout, TimeGANConfig, TimeGANNet
from streamsynth.models.timegan.synthesizer import TimeGANSynthesizer

__all__ = ["Layout", "TimeGANConfig", "TimeGANNet", "TimeGANSynthesizer"]
