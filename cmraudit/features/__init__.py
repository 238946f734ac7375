"""Feature spaces shared by the privacy and fidelity stages, and exact FAISS neighbours."""
