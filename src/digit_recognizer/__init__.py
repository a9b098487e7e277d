"""digit-recognizer: a Kaggle Digit Recognizer kit built on multinomial logistic regression."""
import os

__version__ = "0.1.0"

# Before torch loads (kernel.py imports it): its OpenMP threads spin at every barrier, stealing a busy
# machine's time (with one of two cores busy, `train` at Kaggle size took twice as long). A user's own
# setting stays. Here rather than in the kernel: on Kaggle the machine is the run's alone.
if not any(name in os.environ for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")):
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
