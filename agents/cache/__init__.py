"""The response cache: `responses` (lookup, store, reports), `guard` (when two questions are
the same question) and `calibration` (the semantic tier's measured thresholds)."""
