"""Text handling: CoNLL and plain-text readers and writers, tag schemes, sentences, word tokens."""
