"""Machine learning of the learner app: features, training, evaluation, query strategies, plots."""


def import_stack() -> None:
    """Import the libraries that training, scoring and evaluation use.

    Modules import them where they are used, so that a web process stays small; a Celery worker
    calls this once at start (before its pool forks), so that no task, such as a scoring's first
    chunk, pays seconds of import time.
    """
    import modAL.uncertainty  # noqa: F401
    import scipy.stats  # noqa: F401
    import sklearn.cluster  # noqa: F401
    import sklearn.linear_model  # noqa: F401
    import sklearn.metrics  # noqa: F401
    import sklearn.pipeline  # noqa: F401
    import sklearn.preprocessing  # noqa: F401
    import sklearn.random_projection  # noqa: F401
    import skops.io  # noqa: F401

