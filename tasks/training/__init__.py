"""Training: the teacher's and the student's loop and losses, their update rule, CUDA graphs,
evaluation, and adapt's continued pretraining."""
