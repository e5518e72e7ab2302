"""mmdlr: multimodal deep-learning radiomics on MONAI (Lu et al. 2024, Front. Med. 11:1402967)."""

__version__ = "0.1.0"
