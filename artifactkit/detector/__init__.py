"""A compact YOLOv8-class detector in pure PyTorch. Knows nothing of storage or trackers."""
