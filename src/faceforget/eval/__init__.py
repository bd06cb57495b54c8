"""Evaluation: embedding, k-NN, pure metrics, the retrieval protocol, audits."""
