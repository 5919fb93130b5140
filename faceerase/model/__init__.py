"""The network and how it runs: FaceEraseUNet, its encoders and decoder, loading a model folder or Hub repo, the
ONNX export, the runners (PyTorch, onnxruntime) and the erase settings a model is run with."""
