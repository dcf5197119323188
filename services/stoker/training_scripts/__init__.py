"""Small, real training scripts shipped with stoker, written to the SageMaker container
contract (they read `SM_*` variables), for demos and tests of the training backends."""
