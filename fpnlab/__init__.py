"""fpnlab: Feature Pyramid Networks for object detection, one readable stage at a time."""
__version__ = "0.1.0"
