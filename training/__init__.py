"""Training and model-bundle package.

Importing this package (or ``training.bundle`` / ``training.tokenizer``) never imports
TensorFlow: the serving tier uses the bundle loader and the tokenizer from here.
TensorFlow is imported only inside ``training.model`` and ``training.train``.
"""

LABELS: tuple[str, ...] = ("Electronics", "Household", "Books", "Clothing & Accessories")
