"""digit-recognizer: a Kaggle Digit Recognizer kit built on multinomial logistic regression."""
import os
import time

__version__ = "0.1.0"
# When the package began to load: `train` reports the imports (torch's above all) from here, since its
# flags come from the kernel, which imports torch before the command itself starts.
IMPORT_STARTED = time.perf_counter()

# Before torch loads (kernel.py imports it): its OpenMP threads spin at every barrier, stealing a busy
# machine's time (with one of two cores busy, `train` at Kaggle size took twice as long). A user's own
# setting stays. Here rather than in the kernel: on Kaggle the machine is the run's alone.
if not any(name in os.environ for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")):
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
