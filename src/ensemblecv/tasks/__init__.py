"""Per-task parts of the pipeline (annotation reading, folds, models, scores), one folder each."""
