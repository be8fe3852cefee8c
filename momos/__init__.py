"""MoMos: the Mosaic-of-Motifs parameterization (see docs and ../shared/MOMOS.md)."""
