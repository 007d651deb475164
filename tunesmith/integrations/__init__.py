"""Bridges from training frameworks to tunesmith's session API: a callback per framework that reports its
metrics, saves its checkpoints and ends its loop gracefully when the driver stops the trial.

    tunesmith.integrations.lightning     ReportCallback, resume_path        pip install 'tunesmith[lightning]'
    tunesmith.integrations.transformers  ReportCallback, hyperparameter_search  'tunesmith[transformers]'
    tunesmith.integrations.xgboost       ReportCallback                     'tunesmith[xgboost]'
    tunesmith.integrations.lightgbm      ReportCallback                     'tunesmith[lightgbm]'
    tunesmith.integrations.keras         ReportCallback                     'tunesmith[keras]'
    tunesmith.integrations.sb3           ReportCallback, load_or_create     'tunesmith[sb3]'
    tunesmith.integrations.sklearn       TuneSearchCV                       'tunesmith[sklearn]'
    tunesmith.integrations.wandb         setup                              'tunesmith[wandb]'

Each bridge is imported only when a user imports it (``import tunesmith`` imports none of them, nor their
libraries), and imports its library through :func:`tunesmith._optional.require`, so that a missing library
is one error saying which extra installs it. See docs/integrations.md.
"""
