"""digit-recognizer: a Kaggle Digit Recognizer kit built on multinomial logistic regression."""

__version__ = "0.1.0"
