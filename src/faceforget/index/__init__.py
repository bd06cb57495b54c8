"""FAISS gallery index and its atomic rebuild after a model change."""
