"""Model heads on frozen backbones: the sparse lexicon model and the dense baseline."""
