"""MLflow models-from-code entry point for the served recommender.

MLflow executes this file when it logs and when it loads the model (it is the
``python_model`` path given to ``mlflow.pyfunc.log_model``); the package never
imports it. See :mod:`precision_pain.predict.serve`.
"""

import mlflow

from precision_pain.predict.serve import RecommenderModel

mlflow.models.set_model(RecommenderModel())
