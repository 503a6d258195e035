"""The NLP steps: translation (MarianMT), word alignment (simalign), span projection."""
