"""faceforget: make chosen people unretrievable by a face-retrieval model, keep everyone else, prove it."""
__version__ = "0.1.0"
