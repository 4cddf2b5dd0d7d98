"""Built-in ``permutation`` method: scikit-learn's permutation importance, exactly, faster.

The numbers equal :func:`sklearn.inspection.permutation_importance`'s for the same inputs
and ``random_state``: every column (or group of columns) is permuted with the same
per-column ``RandomState(seed)`` sequence (:mod:`.schedule`), and every permuted copy is
scored by the scorer itself. What changes is how the copies' predictions are obtained:

- constant columns (permuting them changes nothing) and columns a fast path proves
  irrelevant (no tree splits on them, zero coefficients) are not predicted;
- recognised scorers are fed precomputed outputs (:mod:`.scoring`), so many copies share
  one ``predict`` call (batches capped by :data:`~.copies.MAX_BATCH_BYTES`), and plain
  accuracy is counted for all copies at once;
- model-aware fast paths (:mod:`.fastpaths`: linear classifiers, k-nearest neighbours,
  trees and forests) compute outputs without the model, and are used only where they are
  certified to equal the model's own;
- groups run in parallel through joblib, so ``n_jobs`` and ``joblib.parallel_config``
  apply.

See ``docs/performance.md`` for why each shortcut is exact.
"""
