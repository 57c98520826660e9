"""Search backends. Each one is imported only by the code that uses it: ``lucene`` is the only
module that imports pyserini/jnius, ``dense`` the only one that imports faiss."""
