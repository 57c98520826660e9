"""lexret: learned sparse lexicon retrieval for images and text.

Importing the package is cheap: it starts no JVM and imports no torch. The heavy parts
(``lexret.backends.lucene``, ``lexret.backends.dense``, the encoders) are imported by the
commands that need them.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
