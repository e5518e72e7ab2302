"""PyRadiomics features of the cached lesion ROIs."""
