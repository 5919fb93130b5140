"""Training and measuring a model: the loop, WIDER FACE, pack files, augmentation, evaluation, calibration and
the model card."""
