"""NER model, losses, and builders for tiny local models."""
