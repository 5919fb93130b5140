"""From face probabilities to an erased image: the FaceEraser pipeline, thresholds, masks and fill methods (what
the web page mirrors in JavaScript)."""
