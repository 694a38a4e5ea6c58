"""Data, augmentation, training, metrics, ONNX export, timing, result records and the bench runner."""
