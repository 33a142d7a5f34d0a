"""How models get here: ``train`` rebuilds the bundled demo model, ``publish``
turns any scikit-learn estimator into ``model.joblib`` + ``model.json``."""
